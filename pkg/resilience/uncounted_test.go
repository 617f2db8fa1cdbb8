package resilience

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
)

// An Uncounted call never opens, probes or closes the breaker, is rejected
// while the breaker is open, is sent again once its delay is over, and is
// still retried as a GET.
func TestDownstream_UncountedCallsNeverMoveTheBreaker(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	p := testPolicy()
	d := New("provider", p, nil, nil)
	uncounted := Uncounted(context.Background())

	// Failures: each retried, none counted.
	s.status.Store(http.StatusInternalServerError)
	for i := range 4 {
		if status, err := call(t, d, uncounted, http.MethodGet, s.URL); status != 500 || err != nil {
			t.Fatalf("uncounted call %d = %d, %v; want 500", i, status, err)
		}
	}
	if d.State() != circuitbreaker.ClosedState {
		t.Fatalf("State() after 4 failed uncounted calls = %v; want closed", d.State())
	}
	if want := uint64(4 * p.MaxRetries); d.Retries() != want {
		t.Errorf("Retries() = %d; want %d", d.Retries(), want)
	}

	// Counted failures open it; an uncounted call is rejected within the delay.
	for range 3 {
		_, _ = call(t, d, context.Background(), http.MethodPost, s.URL)
	}
	if d.State() != circuitbreaker.OpenState {
		t.Fatalf("State() after 3 failed calls = %v; want open", d.State())
	}
	hits := s.hits.Load()
	_, err := call(t, d, uncounted, http.MethodGet, s.URL)
	var rej *RejectedError
	if !errors.As(err, &rej) || rej.Reason != ReasonBreakerOpen || !errors.Is(err, circuitbreaker.ErrOpen) || rej.RetryAfter <= 0 {
		t.Fatalf("uncounted call with the breaker open = %v; want a RejectedError wrapping ErrOpen with a RetryAfter", err)
	}
	if s.hits.Load() != hits || d.Rejections(ReasonBreakerOpen) != 1 {
		t.Errorf("rejected uncounted call: %d hits, %d rejections; want 0, 1", s.hits.Load()-hits, d.Rejections(ReasonBreakerOpen))
	}

	// Past the delay, good uncounted answers are sent but close nothing;
	// the first counted call is the probe.
	s.status.Store(http.StatusOK)
	time.Sleep(p.Delay + 50*time.Millisecond)
	for i := range 3 {
		if status, err := call(t, d, uncounted, http.MethodGet, s.URL); status != 200 || err != nil {
			t.Fatalf("uncounted call %d past the delay = %d, %v; want 200", i, status, err)
		}
	}
	if d.State() == circuitbreaker.ClosedState {
		t.Fatalf("State() after 3 good uncounted calls = closed; want not closed: they are no probes")
	}
	for range 2 {
		_, _ = call(t, d, context.Background(), http.MethodGet, s.URL)
	}
	if d.State() != circuitbreaker.ClosedState {
		t.Errorf("State() after 2 good probes = %v; want closed", d.State())
	}
}
