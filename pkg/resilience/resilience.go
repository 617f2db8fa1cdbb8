// Package resilience guards calls to another service with failsafe-go: a
// timeout per attempt, one circuit breaker per downstream, retries with
// exponential backoff and jitter for idempotent calls only, a bulkhead that
// bounds concurrent calls, and a fail-fast fallback that turns a rejected
// call (breaker open, bulkhead full) into an error carrying a Retry-After.
//
// A Downstream is built once in run and shared by every caller of that
// dependency: a circuit breaker only works when it sees all the traffic to
// the resource it protects. Its counters (breaker state, retries,
// rejections) are exported by Instrument.
package resilience

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/bulkhead"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/failsafe-go/failsafe-go/fallback"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/failsafe-go/failsafe-go/timeout"

	"github.com/orderflow/orderflow/pkg/env"
)

// Reasons a call is rejected without reaching the downstream; they are the
// reason label of the rejections metric.
const (
	ReasonBreakerOpen  = "breaker_open"
	ReasonBulkheadFull = "bulkhead_full"
)

// Policy is the configuration of one Downstream's policies.
type Policy struct {
	// Timeout bounds each attempt; a timed-out attempt counts as a breaker
	// failure.
	Timeout time.Duration
	// The breaker opens when FailureThreshold of the last Window attempts
	// failed (5xx, 429, connection errors, timeouts).
	FailureThreshold uint
	Window           uint
	// Delay is how long the breaker stays open before half-open probes.
	Delay time.Duration
	// SuccessThreshold successful probes in a row close the breaker again;
	// one failed probe opens it for another Delay.
	SuccessThreshold uint
	// MaxRetries is how many times an idempotent call is retried after a
	// fast failure, waiting Backoff, 2×Backoff, … up to MaxBackoff (±25%
	// jitter) in between.
	MaxRetries int
	Backoff    time.Duration
	MaxBackoff time.Duration
	// MaxConcurrent bounds the calls in flight to the downstream; one more
	// is rejected at once.
	MaxConcurrent uint
}

// DefaultPolicy is the policy with the defaults the services document,
// for attempts bounded by timeout.
func DefaultPolicy(timeout time.Duration) Policy {
	return Policy{
		Timeout:          timeout,
		FailureThreshold: 5,
		Window:           10,
		Delay:            5 * time.Second,
		SuccessThreshold: 2,
		MaxRetries:       2,
		Backoff:          100 * time.Millisecond,
		MaxBackoff:       time.Second,
		MaxConcurrent:    64,
	}
}

// ReadPolicy reads a Policy from the environment: prefix_BREAKER_FAILURE_THRESHOLD,
// prefix_BREAKER_WINDOW, prefix_BREAKER_DELAY, prefix_BREAKER_SUCCESS_THRESHOLD,
// prefix_RETRY_MAX, prefix_RETRY_BACKOFF, prefix_RETRY_MAX_BACKOFF and
// prefix_BULKHEAD, with DefaultPolicy's values as defaults. The attempt
// timeout is the service's own setting (ORDER_CALL_TIMEOUT,
// PAYMENT_PROVIDER_TIMEOUT). Bad values are collected in r.Err and
// Validate.
func ReadPolicy(r *env.Reader, prefix string, timeout time.Duration) Policy {
	return ReadPolicyFrom(r, prefix, DefaultPolicy(timeout))
}

// ReadPolicyFrom is ReadPolicy with the service's own defaults d: a
// downstream called inside another service's attempt needs a smaller
// budget than DefaultPolicy's (docs/patterns/resilience.md, "Time budgets").
func ReadPolicyFrom(r *env.Reader, prefix string, d Policy) Policy {
	timeout := d.Timeout
	return Policy{
		Timeout:          timeout,
		FailureThreshold: uint(max(0, r.Int(prefix+"_BREAKER_FAILURE_THRESHOLD", int(d.FailureThreshold)))),
		Window:           uint(max(0, r.Int(prefix+"_BREAKER_WINDOW", int(d.Window)))),
		Delay:            r.Duration(prefix+"_BREAKER_DELAY", d.Delay),
		SuccessThreshold: uint(max(0, r.Int(prefix+"_BREAKER_SUCCESS_THRESHOLD", int(d.SuccessThreshold)))),
		MaxRetries:       r.Int(prefix+"_RETRY_MAX", d.MaxRetries),
		Backoff:          r.Duration(prefix+"_RETRY_BACKOFF", d.Backoff),
		MaxBackoff:       r.Duration(prefix+"_RETRY_MAX_BACKOFF", d.MaxBackoff),
		MaxConcurrent:    uint(max(0, r.Int(prefix+"_BULKHEAD", int(d.MaxConcurrent)))),
	}
}

// Validate reports every setting out of range, named with prefix as
// ReadPolicy reads it. The timeout is the caller's setting to check.
func (p Policy) Validate(prefix string) error {
	var errs []error
	if p.FailureThreshold < 1 {
		errs = append(errs, fmt.Errorf("%s_BREAKER_FAILURE_THRESHOLD must be at least 1", prefix))
	}
	if p.Window < p.FailureThreshold {
		errs = append(errs, fmt.Errorf("%s_BREAKER_WINDOW must be at least %s_BREAKER_FAILURE_THRESHOLD", prefix, prefix))
	}
	if p.Delay <= 0 {
		errs = append(errs, fmt.Errorf("%s_BREAKER_DELAY must be positive", prefix))
	}
	if p.SuccessThreshold < 1 {
		errs = append(errs, fmt.Errorf("%s_BREAKER_SUCCESS_THRESHOLD must be at least 1", prefix))
	}
	if p.MaxRetries < 0 {
		errs = append(errs, fmt.Errorf("%s_RETRY_MAX must not be negative", prefix))
	}
	if p.Backoff <= 0 || p.MaxBackoff < p.Backoff {
		errs = append(errs, fmt.Errorf("%s_RETRY_BACKOFF must be positive and at most %s_RETRY_MAX_BACKOFF", prefix, prefix))
	}
	if p.MaxConcurrent < 1 {
		errs = append(errs, fmt.Errorf("%s_BULKHEAD must be at least 1", prefix))
	}
	return errors.Join(errs...)
}

// Budget is the longest one guarded call can take: every attempt timing
// out just short of Timeout, plus the longest jittered backoffs.
func (p Policy) Budget() time.Duration {
	retries := time.Duration(max(p.MaxRetries, 0))
	return (retries+1)*p.Timeout + retries*p.MaxBackoff*5/4
}

// RejectedError is the fail-fast fallback's answer to a call that was not
// sent: the downstream's breaker is open or its bulkhead is full. It wraps
// circuitbreaker.ErrOpen or bulkhead.ErrFull.
type RejectedError struct {
	Downstream string
	Reason     string // ReasonBreakerOpen or ReasonBulkheadFull
	// RetryAfter is when a retry may succeed: the breaker's remaining open
	// delay, or a second for a full bulkhead.
	RetryAfter time.Duration
	cause      error
}

// Error describes the rejection.
func (e *RejectedError) Error() string {
	return fmt.Sprintf("%s rejected (%s), retry after %s", e.Downstream, e.Reason, e.RetryAfter)
}

// Unwrap returns circuitbreaker.ErrOpen or bulkhead.ErrFull.
func (e *RejectedError) Unwrap() error { return e.cause }

// RetryAfterSeconds is d in whole seconds for a Retry-After header: rounded
// up, and at least 1 so a client never retries in a tight loop.
func RetryAfterSeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

// RetryAfterHeader is the Retry-After value for err: the rejection's delay
// when err holds a *RejectedError, else 1 second.
func RetryAfterHeader(err error) string {
	var rej *RejectedError
	if errors.As(err, &rej) {
		return strconv.Itoa(RetryAfterSeconds(rej.RetryAfter))
	}
	return "1"
}

type idempotentKey struct{}

// Idempotent marks ctx so that a call made with it may be retried. Mark
// only calls whose repetition has the effect of one call: a write that
// carries an idempotency key, or one the downstream deduplicates by an id.
// GET, HEAD and OPTIONS are retried without the mark.
func Idempotent(ctx context.Context) context.Context {
	return context.WithValue(ctx, idempotentKey{}, true)
}

type uncountedKey struct{}

// Uncounted marks ctx so that a call made with it never counts towards the
// breaker: it is rejected while the breaker is open (until its delay has
// passed), like any call, but it is never a half-open probe and its answer
// is neither a success nor a failure. Mark the calls whose health says
// nothing of the calls the breaker guards: a look-up of what a write did,
// answered from a store that stays fast while the writes time out, would
// otherwise close the breaker those writes opened.
func Uncounted(ctx context.Context) context.Context {
	return context.WithValue(ctx, uncountedKey{}, true)
}

func uncounted(req *http.Request) bool {
	marked, _ := req.Context().Value(uncountedKey{}).(bool)
	return marked
}

func retryable(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	marked, _ := req.Context().Value(idempotentKey{}).(bool)
	return marked
}

// Downstream is the guard around one dependency: an http.RoundTripper that
// runs every request through the shared policies, and the counters of what
// they did. It is safe for concurrent use.
type Downstream struct {
	name     string
	policy   Policy
	breaker  circuitbreaker.CircuitBreaker[*http.Response]
	retrying http.RoundTripper // fallback, retry, bulkhead, breaker, timeout
	once     http.RoundTripper // fallback, bulkhead, breaker, timeout
	// The same without the breaker, for Uncounted calls.
	uncountedRetrying, uncountedOnce http.RoundTripper

	retries      atomic.Uint64
	breakerOpen  atomic.Uint64
	bulkheadFull atomic.Uint64
}

// NewTransport returns the pooled transport of a service's outgoing calls:
// http.DefaultTransport's settings with up to 100 idle connections per
// host (the default 2 would reconnect on every call under load).
func NewTransport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 200
	tr.MaxIdleConnsPerHost = 100
	return tr
}

// New builds the policies for the downstream called name around next
// (NewTransport's pooled transport when nil). Breaker transitions are logged to log, once
// each.
func New(name string, p Policy, next http.RoundTripper, log *slog.Logger) *Downstream {
	if next == nil {
		next = NewTransport()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	next = budgetHeader{next: next, attempt: p.Timeout}
	d := &Downstream{name: name, policy: p}

	// The timeout is innermost: each attempt gets its own, and the breaker
	// sees a timed-out attempt as a failure.
	to := timeout.New[*http.Response](p.Timeout)

	// One breaker per downstream. Business answers (402, 404, 409, …) are
	// successes: a run of declined cards says nothing about the health of
	// the payment service and must never open its breaker.
	d.breaker = circuitbreaker.NewBuilder[*http.Response]().
		HandleIf(isFailure).
		WithFailureThresholdRatio(p.FailureThreshold, p.Window).
		WithDelay(p.Delay).
		WithSuccessThreshold(p.SuccessThreshold).
		OnStateChanged(func(e circuitbreaker.StateChangedEvent) {
			level := slog.LevelInfo
			if e.NewState == circuitbreaker.OpenState {
				level = slog.LevelWarn
			}
			log.Log(context.Background(), level, "circuit breaker "+e.NewState.String(),
				"downstream", name, "from", e.OldState.String(), "to", e.NewState.String(),
				"failures", e.Metrics().Failures(), "executions", e.Metrics().Executions(),
				"delay", p.Delay.String())
		}).
		Build()

	// The bulkhead sits inside the retry, so a call waiting out a backoff
	// holds no permit, and outside the breaker, so a rejection by a full
	// bulkhead never counts against the downstream's health.
	bh := bulkhead.New[*http.Response](p.MaxConcurrent)

	// Retries only for fast failures of idempotent calls (see retryable and
	// isRetryable), never for a rejection: retrying an open breaker or a
	// full bulkhead only burns the client's deadline. For the same reason
	// a call stops retrying as soon as its failure opened the breaker (or
	// failed a half-open probe), instead of backing off into a rejection.
	rp := retrypolicy.NewBuilder[*http.Response]().
		HandleIf(isRetryable).
		AbortOnErrors(context.Canceled, context.DeadlineExceeded, circuitbreaker.ErrOpen, bulkhead.ErrFull).
		AbortIf(func(*http.Response, error) bool { return d.breaker.IsOpen() }).
		WithMaxRetries(p.MaxRetries).
		WithBackoff(p.Backoff, p.MaxBackoff).
		WithJitterFactor(0.25).
		ReturnLastFailure().
		OnRetryScheduled(func(e failsafe.ExecutionScheduledEvent[*http.Response]) {
			d.retries.Add(1)
			// The failed answer is dropped: free its connection.
			if resp := e.LastResult(); resp != nil && resp.Body != nil {
				_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
				resp.Body.Close()
			}
		}).
		Build()

	// The fallback answers a rejected call at once with a *RejectedError
	// that tells the caller when to come back.
	fb := fallback.NewBuilderWithFunc(func(exec failsafe.Execution[*http.Response]) (*http.Response, error) {
		cause := exec.LastError()
		if errors.Is(cause, circuitbreaker.ErrOpen) {
			return nil, d.rejectOpen(cause, d.breaker.RemainingDelay())
		}
		d.bulkheadFull.Add(1)
		return nil, &RejectedError{Downstream: name, Reason: ReasonBulkheadFull, RetryAfter: time.Second, cause: cause}
	}).HandleErrors(circuitbreaker.ErrOpen, bulkhead.ErrFull).Build()

	// failsafehttp runs each attempt with the request's context merged with
	// the execution's, so the caller's cancellation and deadline reach the
	// attempt, and rewinds the body for a retry.
	d.retrying = failsafehttp.NewRoundTripper(next, fb, rp, bh, d.breaker, to)
	d.once = failsafehttp.NewRoundTripper(next, fb, bh, d.breaker, to)
	d.uncountedRetrying = failsafehttp.NewRoundTripper(next, fb, rp, bh, to)
	d.uncountedOnce = failsafehttp.NewRoundTripper(next, fb, bh, to)
	return d
}

// isFailure is the breaker's view of an attempt: 5xx, 429, a transport
// error or a timeout are failures; every other answer, including the 4xx
// business answers, is a success. A caller that gave up (context.Canceled)
// says nothing about the downstream.
func isFailure(resp *http.Response, err error) bool {
	if err != nil {
		return !errors.Is(err, context.Canceled)
	}
	return resp != nil && (resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests)
}

// isRetryable reports a failed attempt worth repeating: a connection error,
// 429, or a 5xx other than 501 and 504. A timed-out attempt (ours, or a 504
// from a gateway that timed out) is not retried: it already spent a whole
// timeout, and repeating it against a slow dependency would multiply the
// latency the caller sees and the load on the dependency. Nor is an answer
// with a Retry-After header: the server said when to come back (payment does
// so when its provider is down), and a sub-second backoff would ignore it.
func isRetryable(resp *http.Response, err error) bool {
	if err != nil {
		return !errors.Is(err, timeout.ErrExceeded)
	}
	if resp == nil || resp.Header.Get("Retry-After") != "" {
		return false
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return true
	case resp.StatusCode == http.StatusNotImplemented, resp.StatusCode == http.StatusGatewayTimeout:
		return false
	default:
		return resp.StatusCode >= 500
	}
}

// RoundTrip sends req through the policies. Only GET/HEAD/OPTIONS and
// requests whose context is marked Idempotent are retried; a request whose
// context is marked Uncounted bypasses the breaker once its delay is over.
func (d *Downstream) RoundTrip(req *http.Request) (*http.Response, error) {
	if uncounted(req) {
		if wait := d.breaker.RemainingDelay(); wait > 0 {
			if req.Body != nil {
				req.Body.Close() // a RoundTripper closes the body, also on error
			}
			return nil, d.rejectOpen(circuitbreaker.ErrOpen, wait)
		}
		if retryable(req) {
			return d.uncountedRetrying.RoundTrip(req)
		}
		return d.uncountedOnce.RoundTrip(req)
	}
	if retryable(req) {
		return d.retrying.RoundTrip(req)
	}
	return d.once.RoundTrip(req)
}

// rejectOpen is the answer to a call the open breaker refused, counted in
// the breaker-open rejections; retryAfter is the breaker's remaining delay.
func (d *Downstream) rejectOpen(cause error, retryAfter time.Duration) *RejectedError {
	d.breakerOpen.Add(1)
	return &RejectedError{Downstream: d.name, Reason: ReasonBreakerOpen, RetryAfter: retryAfter, cause: cause}
}

// Client returns an http.Client whose every request goes through d. It has
// no timeout of its own: attempts are bounded by the policy, whole calls by
// the caller's context.
func (d *Downstream) Client() *http.Client { return &http.Client{Transport: d} }

// Name is the downstream's name, the downstream label of its metrics.
func (d *Downstream) Name() string { return d.name }

// Policy returns the configuration d was built with.
func (d *Downstream) Policy() Policy { return d.policy }

// State is the breaker's state: circuitbreaker.ClosedState (0), OpenState
// (1) or HalfOpenState (2), the value of the breaker state gauge.
func (d *Downstream) State() circuitbreaker.State { return d.breaker.State() }

// RemainingDelay is how long the breaker stays open (0 unless open).
func (d *Downstream) RemainingDelay() time.Duration { return d.breaker.RemainingDelay() }

// Retries counts the retries scheduled since start.
func (d *Downstream) Retries() uint64 { return d.retries.Load() }

// Rejections counts the calls rejected without being sent, for reason
// ReasonBreakerOpen or ReasonBulkheadFull (0 for any other reason).
func (d *Downstream) Rejections(reason string) uint64 {
	switch reason {
	case ReasonBreakerOpen:
		return d.breakerOpen.Load()
	case ReasonBulkheadFull:
		return d.bulkheadFull.Load()
	}
	return 0
}

// RequestTimeoutHeader tells the downstream how long this attempt waits for
// its answer, in whole milliseconds; pkg/web's Deadline reads it.
const RequestTimeoutHeader = "Request-Timeout"

// budgetHeader sends each attempt's budget along with it: the attempt's
// timeout, or what is left of the caller's deadline when that is sooner. A
// downstream that knows it cannot be waited for longer stops there instead
// of finishing work nobody will read, and its own calls inherit the rest.
type budgetHeader struct {
	next    http.RoundTripper
	attempt time.Duration
}

func (b budgetHeader) RoundTrip(req *http.Request) (*http.Response, error) {
	budget := b.attempt
	if dl, ok := req.Context().Deadline(); ok {
		budget = min(budget, time.Until(dl))
	}
	if budget > 0 {
		req = req.Clone(req.Context()) // a RoundTripper must not change its request
		req.Header.Set(RequestTimeoutHeader, strconv.FormatInt(max(budget.Milliseconds(), 1), 10))
	}
	return b.next.RoundTrip(req)
}
