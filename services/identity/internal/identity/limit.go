package identity

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"sync/atomic"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// LoginLimiter bounds password attempts per account and per client address
// with GCRA in Redis (go-redis/redis_rate), so every replica draws from the
// same allowance and a guesser cannot multiply it by the replica count.
// When Redis fails, attempts are let through (fail open) and counted:
// losing the limiter for a while is better than locking every customer out.
type LoginLimiter struct {
	rl     *redis_rate.Limiter
	prefix string
	limit  redis_rate.Limit
	log    *slog.Logger

	failOpens atomic.Uint64
	down      atomic.Bool
}

// NewLoginLimiter returns a limiter allowing perMinute attempts a minute
// for each account and each client address; perMinute <= 0 disables it.
// prefix starts every Redis key ("identity:login:").
func NewLoginLimiter(rdb *redis.Client, prefix string, perMinute int, log *slog.Logger) *LoginLimiter {
	l := &LoginLimiter{prefix: prefix, log: log}
	if perMinute > 0 {
		l.rl = redis_rate.NewLimiter(rdb)
		l.limit = redis_rate.PerMinute(perMinute)
	}
	return l
}

// Allow counts one attempt from clientIP for the (lower-cased) e-mail and
// returns a *RateLimitError when either allowance is spent. The address is
// checked first: a client over its own limit does not also use up the
// account's allowance.
func (l *LoginLimiter) Allow(ctx context.Context, email, clientIP string) error {
	if l.rl == nil {
		return nil
	}
	// The e-mail is hashed: the addresses people type never reach Redis.
	sum := sha256.Sum256([]byte(email))
	for _, key := range []string{"ip:" + clientIP, "account:" + hex.EncodeToString(sum[:16])} {
		res, err := l.rl.Allow(ctx, l.prefix+key, l.limit)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			l.failOpens.Add(1)
			if l.down.CompareAndSwap(false, true) {
				l.log.WarnContext(ctx, "login rate limiter: redis unavailable, letting attempts through", "error", err.Error())
			}
			continue
		}
		if l.down.CompareAndSwap(true, false) {
			l.log.InfoContext(ctx, "login rate limiter: redis available again, limiting resumes")
		}
		if res.Allowed == 0 {
			return &RateLimitError{RetryAfter: res.RetryAfter}
		}
	}
	return nil
}

// FailOpens counts the checks let through because Redis failed.
func (l *LoginLimiter) FailOpens() uint64 { return l.failOpens.Load() }
