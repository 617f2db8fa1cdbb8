package order

import (
	"context"
	"fmt"
	"time"

	"github.com/orderflow/orderflow/pkg/resilience"
)

// breakerClock is implemented by the HTTP clients, whose calls go through a
// circuit breaker; hand-written fakes need not implement it.
type breakerClock interface {
	// RetryAfter is how long the client's circuit breaker stays open.
	RetryAfter() time.Duration
}

// RetryAfter is the Retry-After, in whole seconds (at least 1), of a 503
// dependency_unavailable answer: the longest remaining open delay of the
// breakers in front of inventory and payment. An order needs both, so a
// retry before every breaker has half-opened would be rejected again at
// once.
func (s *Service) RetryAfter() int {
	var longest time.Duration
	for _, c := range []any{s.inv, s.pay} {
		if b, ok := c.(breakerClock); ok {
			longest = max(longest, b.RetryAfter())
		}
	}
	return resilience.RetryAfterSeconds(longest)
}

// retryCompensationSoon brings the next attempt of a failed compensation
// forward from the end of its lease to when the breakers allow calls again
// (at least a second): a release rejected by an open breaker took no time,
// and must not wait out a whole lease while the dependency is back.
func (s *Service) retryCompensationSoon(ctx context.Context, orderID string) {
	d := time.Duration(s.RetryAfter()) * time.Second
	if err := s.store.retryCompensationIn(ctx, orderID, d); err != nil {
		s.log.WarnContext(ctx, "reschedule compensation", "order_id", orderID, "error", err)
	}
}

// retryCompensationIn moves the order's compensation, leased until later,
// to d from now; it never moves it later.
// It lives here rather than in store.go because only the resilience path
// needs it.
func (s *Store) retryCompensationIn(ctx context.Context, orderID string, d time.Duration) error {
	const q = `UPDATE orders SET compensate_after = LEAST(compensate_after, now() + make_interval(secs => $2::float8))
		WHERE id = $1 AND compensate_after IS NOT NULL`
	if _, err := s.pool.Exec(ctx, q, orderID, d.Seconds()); err != nil {
		return fmt.Errorf("reschedule compensation of %s: %w", orderID, err)
	}
	return nil
}
