package order

import (
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
	return resilience.RetryAfterSeconds(s.breakerWait())
}

// breakerWait is how long the longest open breaker in front of inventory or
// payment stays open (0 when none is). A compensation is not retried before
// then: the attempt would be rejected without a call and only use up one of
// its attempts.
func (s *Service) breakerWait() time.Duration {
	var longest time.Duration
	for _, c := range []any{s.inv, s.pay} {
		if b, ok := c.(breakerClock); ok {
			longest = max(longest, b.RetryAfter())
		}
	}
	return longest
}
