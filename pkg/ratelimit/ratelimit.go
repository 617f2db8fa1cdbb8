// Package ratelimit limits requests per client with GCRA in Redis
// (go-redis/redis_rate), so every replica of a service draws from the same
// allowance: a client cannot multiply its limit by the number of replicas.
//
// Usage, in a service's main and routes:
//
//	limit := ratelimit.NewLimiter(rdb, "order", ratelimit.PerSecond(100, 200), log)
//	err := limit.Instrument(meter) // orderflow_ratelimit_fail_open_total
//	r.With(limit.Handler).Get("/v1/things", ...)
//
// A client is the subject of its verified access token (auth.Authenticate
// runs first), else its IP address (r.RemoteAddr, which web.ClientAddr has
// set from a trusted proxy's X-Forwarded-For).
// Every limited response carries the IETF draft headers RateLimit-Limit,
// RateLimit-Remaining and RateLimit-Reset; a refused one is a 429 problem
// with code "rate_limited" and Retry-After. When Redis fails the request is
// let through (fail open): losing the limiter for a while is better than
// losing the API. Each such request is counted (FailOpens, and the metric
// of Instrument), and the start and end of an outage are logged once each.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/metric"

	"github.com/orderflow/orderflow/pkg/auth"
	"github.com/orderflow/orderflow/pkg/web"
)

// PerSecond returns a limit of rate requests per second with bursts of up
// to burst requests. A rate of 0 returns the zero Limit, which disables
// limiting; a burst below rate is raised to rate.
func PerSecond(rate, burst int) redis_rate.Limit {
	if rate <= 0 {
		return redis_rate.Limit{}
	}
	return redis_rate.Limit{Rate: rate, Burst: max(burst, rate), Period: time.Second}
}

// Limiter allows each client a limit. Build one per service in run and
// share it: its counters are the whole process's.
type Limiter struct {
	rl        *redis_rate.Limiter
	prefix    string
	limit     redis_rate.Limit
	log       *slog.Logger
	failOpens atomic.Uint64
	down      atomic.Bool
	skipUntil atomic.Int64 // unix nanos; while down, Redis is probed at most this often
}

// NewLimiter returns a Limiter that allows each client limit (a zero Limit
// turns Handler into a no-op). scope names the service ("order",
// "inventory"): each service has its own allowance per client, shared by
// its replicas.
func NewLimiter(rdb *redis.Client, scope string, limit redis_rate.Limit, log *slog.Logger) *Limiter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Limiter{rl: redis_rate.NewLimiter(rdb), prefix: scope + ":", limit: limit, log: log}
}

// Instrument exports on m the requests let through unlimited because Redis
// failed, orderflow_ratelimit_fail_open_total, read when scraped.
func (l *Limiter) Instrument(m metric.Meter) error {
	_, err := m.Int64ObservableCounter("orderflow.ratelimit.fail_open",
		metric.WithDescription("Requests let through unlimited because Redis failed."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(int64(l.failOpens.Load()))
			return nil
		}))
	if err != nil {
		return fmt.Errorf("rate limit fail-open metric: %w", err)
	}
	return nil
}

// FailOpens counts the requests let through unlimited because Redis failed.
func (l *Limiter) FailOpens() uint64 { return l.failOpens.Load() }

// downBackoff is how long requests skip Redis after it failed: during an
// outage one request per interval probes it, the rest pass at once instead
// of each waiting for a dial timeout.
const downBackoff = time.Second

// Handler is the middleware that limits the requests to next.
func (l *Limiter) Handler(next http.Handler) http.Handler {
	if l.limit.IsZero() {
		return next
	}
	limitHeader := strconv.Itoa(l.limit.Burst)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("RateLimit-Limit", limitHeader)
		var res *redis_rate.Result
		err := errSkipped
		if !l.skipping() {
			res, err = l.rl.Allow(r.Context(), l.prefix+ClientKey(r), l.limit)
		}
		if err != nil {
			if r.Context().Err() != nil {
				return // the client is gone; nobody reads an answer
			}
			l.failOpen(r.Context(), err)
			// Nothing was counted: report the full allowance.
			h.Set("RateLimit-Remaining", limitHeader)
			h.Set("RateLimit-Reset", "0")
			next.ServeHTTP(w, r)
			return
		}
		if l.down.CompareAndSwap(true, false) {
			l.log.InfoContext(r.Context(), "rate limiter: redis available again, limiting resumes")
		}
		h.Set("RateLimit-Remaining", strconv.Itoa(res.Remaining))
		h.Set("RateLimit-Reset", strconv.Itoa(ceilSeconds(res.ResetAfter)))
		if res.Allowed == 0 {
			retry := max(ceilSeconds(res.RetryAfter), 1)
			h.Set("Retry-After", strconv.Itoa(retry))
			web.WriteProblem(w, web.NewProblem(http.StatusTooManyRequests, "rate_limited",
				fmt.Sprintf("too many requests: at most %s; retry after %d s", l.limit, retry)))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// errSkipped stands for the Redis error of a request that did not even try.
var errSkipped = errors.New("redis skipped after a recent failure")

func (l *Limiter) skipping() bool {
	return l.down.Load() && time.Now().UnixNano() < l.skipUntil.Load()
}

func (l *Limiter) failOpen(ctx context.Context, err error) {
	l.failOpens.Add(1)
	if err != errSkipped {
		l.skipUntil.Store(time.Now().Add(downBackoff).UnixNano())
	}
	if l.down.CompareAndSwap(false, true) {
		l.log.WarnContext(ctx, "rate limiter: redis unavailable, letting requests through", "error", err.Error())
	}
}

// ClientKey is the Redis key suffix of the client that sent r: the
// subject of its verified access token (a customer or a client id), else
// its IP address as web.ClientAddr set it. Nothing a client can pick
// freely (a header, a new random key per request) is a new allowance.
func ClientKey(r *http.Request) string {
	if p, ok := auth.FromContext(r.Context()); ok {
		return "sub:" + p.Subject
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "ip:" + host
}

// ceilSeconds rounds d up to whole seconds (headers carry integers; rounding
// down would invite a retry that is refused again). Negative means none.
func ceilSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int(math.Ceil(d.Seconds()))
}
