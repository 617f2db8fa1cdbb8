package identity

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// LoginLimiter bounds password attempts with GCRA in Redis
// (go-redis/redis_rate), so every replica draws from the same allowance and
// a guesser cannot multiply it by the replica count:
//   - every attempt counts against its client address (perMinute);
//   - failed attempts count against the account from that address
//     (perMinute) and against the account from everywhere (10 × perMinute).
//
// Only failures count against an account, and per address first, so
// somebody who knows a customer's e-mail cannot lock the customer out from
// their own address with wrong passwords; a guesser spread over many
// addresses is still bounded by the account's overall budget.
// When Redis fails, attempts are let through (fail open) and counted:
// losing the limiter for a while is better than locking every customer out.
type LoginLimiter struct {
	rl      *redis_rate.Limiter
	prefix  string
	limit   redis_rate.Limit
	account redis_rate.Limit
	log     *slog.Logger

	failOpens atomic.Uint64
	down      atomic.Bool
}

// NewLoginLimiter returns a limiter allowing perMinute attempts a minute
// for each client address (see LoginLimiter for the account budgets);
// perMinute <= 0 disables it. prefix starts every Redis key
// ("identity:login:").
func NewLoginLimiter(rdb *redis.Client, prefix string, perMinute int, log *slog.Logger) *LoginLimiter {
	l := &LoginLimiter{prefix: prefix, log: log}
	if perMinute > 0 {
		l.rl = redis_rate.NewLimiter(rdb)
		l.limit = redis_rate.PerMinute(perMinute)
		l.account = redis_rate.PerMinute(10 * perMinute)
	}
	return l
}

// accountKeys are the Redis keys of the account's failure budgets: from
// clientIP, and from everywhere. The e-mail is hashed: the addresses
// people type never reach Redis.
func (l *LoginLimiter) accountKeys(email, clientIP string) [2]string {
	sum := sha256.Sum256([]byte(email))
	account := "account:" + hex.EncodeToString(sum[:16])
	return [2]string{account + ":ip:" + clientIP, account}
}

// Allow is called before the password is checked. It counts the attempt
// against clientIP and returns a *RateLimitError when the address is over
// its allowance or the account has spent a failure budget.
func (l *LoginLimiter) Allow(ctx context.Context, email, clientIP string) error {
	if l.rl == nil {
		return nil
	}
	if err := l.allow(ctx, "ip:"+clientIP); err != nil {
		return err
	}
	keys := l.accountKeys(email, clientIP)
	for i, limit := range []redis_rate.Limit{l.limit, l.account} {
		// A peek (cost 0): would one more failure still fit?
		res, err := l.rl.AllowN(ctx, l.prefix+keys[i], limit, 0)
		if err := l.settle(ctx, err); err != nil {
			return err
		}
		if res != nil && (res.RetryAfter > 0 || res.Remaining < 1) {
			return &RateLimitError{RetryAfter: max(res.RetryAfter, time.Second)}
		}
	}
	return nil
}

// AllowSignUp counts a sign-up from clientIP and returns a
// *RateLimitError when the address is over the same per-minute allowance.
func (l *LoginLimiter) AllowSignUp(ctx context.Context, clientIP string) error {
	if l.rl == nil {
		return nil
	}
	return l.allow(ctx, "signup:ip:"+clientIP)
}

// allow counts one attempt against key's per-minute allowance and returns
// a *RateLimitError when the allowance is spent.
func (l *LoginLimiter) allow(ctx context.Context, key string) error {
	res, err := l.rl.Allow(ctx, l.prefix+key, l.limit)
	if err := l.settle(ctx, err); err != nil {
		return err
	}
	if res != nil && res.Allowed == 0 {
		return &RateLimitError{RetryAfter: res.RetryAfter}
	}
	return nil
}

// Failed counts a failed attempt against the account's budgets.
func (l *LoginLimiter) Failed(ctx context.Context, email, clientIP string) {
	if l.rl == nil {
		return
	}
	keys := l.accountKeys(email, clientIP)
	for i, limit := range []redis_rate.Limit{l.limit, l.account} {
		_, err := l.rl.Allow(ctx, l.prefix+keys[i], limit)
		_ = l.settle(ctx, err)
	}
}

// settle turns a Redis failure into a fail-open (nil, counted and logged
// once per outage); a cancelled request stays an error.
func (l *LoginLimiter) settle(ctx context.Context, err error) error {
	if err == nil {
		if l.down.CompareAndSwap(true, false) {
			l.log.InfoContext(ctx, "login rate limiter: redis available again, limiting resumes")
		}
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	l.failOpens.Add(1)
	if l.down.CompareAndSwap(false, true) {
		l.log.WarnContext(ctx, "login rate limiter: redis unavailable, letting attempts through", "error", err.Error())
	}
	return nil
}

// FailOpens counts the checks let through because Redis failed.
func (l *LoginLimiter) FailOpens() uint64 { return l.failOpens.Load() }
