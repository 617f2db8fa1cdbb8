package resilience

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go/bulkhead"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"

	"github.com/orderflow/orderflow/pkg/env"
)

// server is a downstream whose answer a test changes at run time.
type server struct {
	*httptest.Server
	status atomic.Int32
	delay  atomic.Int64 // nanoseconds
	hits   atomic.Int32
	// retryAfter adds Retry-After: 1 to every answer.
	retryAfter atomic.Bool
}

func newServer(t *testing.T) *server {
	t.Helper()
	s := &server{}
	s.status.Store(http.StatusOK)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		if d := time.Duration(s.delay.Load()); d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		if s.retryAfter.Load() {
			w.Header().Set("Retry-After", "1")
		}
		w.WriteHeader(int(s.status.Load()))
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(s.Close)
	return s
}

func testPolicy() Policy {
	p := DefaultPolicy(time.Second)
	p.FailureThreshold, p.Window = 3, 5
	p.Delay = 300 * time.Millisecond
	p.SuccessThreshold = 2
	p.Backoff, p.MaxBackoff = 10*time.Millisecond, 20*time.Millisecond
	return p
}

// call sends one request through d and returns the status (0 on error).
func call(t *testing.T, d *Downstream, ctx context.Context, method, url string) (int, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(`{"order_id":"o1"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := d.Client().Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

func TestDownstream_BreakerOpensFailsFastAndCloses(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	p := testPolicy()
	p.MaxRetries = 0
	d := New("inventory", p, nil, nil)
	ctx := Idempotent(context.Background())

	s.status.Store(http.StatusServiceUnavailable)
	for i := range 3 {
		if status, err := call(t, d, ctx, http.MethodPost, s.URL); status != 503 || err != nil {
			t.Fatalf("call %d = %d, %v; want 503", i, status, err)
		}
	}
	if got := d.State(); got != circuitbreaker.OpenState {
		t.Fatalf("State() after 3 failures = %v; want open", got)
	}

	hits := s.hits.Load()
	start := time.Now()
	_, err := call(t, d, ctx, http.MethodPost, s.URL)
	elapsed := time.Since(start)
	var rej *RejectedError
	if !errors.As(err, &rej) || rej.Reason != ReasonBreakerOpen || !errors.Is(err, circuitbreaker.ErrOpen) {
		t.Fatalf("call with the breaker open = %v; want a RejectedError wrapping ErrOpen", err)
	}
	if elapsed > 100*time.Millisecond {
		t.Errorf("rejected call took %v; want < 100ms", elapsed)
	}
	if rej.RetryAfter <= 0 || rej.RetryAfter > p.Delay {
		t.Errorf("RetryAfter = %v; want in (0, %v]", rej.RetryAfter, p.Delay)
	}
	if got := RetryAfterHeader(err); got != "1" {
		t.Errorf("RetryAfterHeader = %q; want 1 (300ms rounded up)", got)
	}
	if s.hits.Load() != hits {
		t.Errorf("a rejected call reached the server")
	}
	if d.Rejections(ReasonBreakerOpen) != 1 {
		t.Errorf("Rejections = %d; want 1", d.Rejections(ReasonBreakerOpen))
	}

	// The dependency heals; after the delay two probes close the breaker.
	s.status.Store(http.StatusOK)
	time.Sleep(p.Delay + 50*time.Millisecond)
	for i := range 2 {
		if status, err := call(t, d, ctx, http.MethodPost, s.URL); status != 200 || err != nil {
			t.Fatalf("probe %d = %d, %v; want 200", i, status, err)
		}
	}
	if got := d.State(); got != circuitbreaker.ClosedState {
		t.Errorf("State() after 2 good probes = %v; want closed", got)
	}
}

func TestDownstream_FailedProbeReopens(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	p := testPolicy()
	p.MaxRetries = 0
	d := New("payment", p, nil, nil)
	s.status.Store(http.StatusInternalServerError)
	for range 3 {
		_, _ = call(t, d, context.Background(), http.MethodGet, s.URL)
	}
	time.Sleep(p.Delay + 50*time.Millisecond)
	if status, _ := call(t, d, context.Background(), http.MethodGet, s.URL); status != 500 {
		t.Fatalf("probe = %d; want 500 from the still broken server", status)
	}
	if got := d.State(); got != circuitbreaker.OpenState {
		t.Errorf("State() after a failed probe = %v; want open", got)
	}
}

func TestDownstream_BusinessAnswersNeverTrip(t *testing.T) {
	t.Parallel()
	for _, status := range []int{http.StatusPaymentRequired, http.StatusConflict, http.StatusNotFound, http.StatusBadRequest} {
		s := newServer(t)
		d := New("payment", testPolicy(), nil, nil)
		s.status.Store(int32(status))
		for range 20 {
			if got, err := call(t, d, Idempotent(context.Background()), http.MethodPost, s.URL); got != status || err != nil {
				t.Fatalf("call = %d, %v; want %d", got, err, status)
			}
		}
		if d.State() != circuitbreaker.ClosedState || d.Retries() != 0 {
			t.Errorf("after 20 × %d: State() = %v, Retries() = %d; want closed, 0", status, d.State(), d.Retries())
		}
		if s.hits.Load() != 20 {
			t.Errorf("%d: server hits = %d; want 20 (no retries)", status, s.hits.Load())
		}
	}
}

func TestDownstream_RetriesOnlyIdempotentCalls(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		method     string
		ctx        context.Context
		status     int
		retryAfter bool
		wantHits   int32
	}{
		{"503 with Retry-After is not retried", http.MethodPost, Idempotent(context.Background()), 503, true, 1},
		{"marked POST is retried", http.MethodPost, Idempotent(context.Background()), 503, false, 3},
		{"GET is retried", http.MethodGet, context.Background(), 502, false, 3},
		{"unmarked POST is not retried", http.MethodPost, context.Background(), 503, false, 1},
		{"504 is not retried", http.MethodPost, Idempotent(context.Background()), 504, false, 1},
		{"429 is retried", http.MethodPost, Idempotent(context.Background()), 429, false, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t)
			p := testPolicy()
			p.FailureThreshold, p.Window = 10, 10
			d := New("x", p, nil, nil)
			s.status.Store(int32(tt.status))
			s.retryAfter.Store(tt.retryAfter)
			status, err := call(t, d, tt.ctx, tt.method, s.URL)
			if err != nil || status != tt.status {
				t.Fatalf("call = %d, %v; want the last answer %d", status, err, tt.status)
			}
			if got := s.hits.Load(); got != tt.wantHits {
				t.Errorf("server hits = %d; want %d", got, tt.wantHits)
			}
			if got := d.Retries(); got != uint64(tt.wantHits-1) {
				t.Errorf("Retries() = %d; want %d", got, tt.wantHits-1)
			}
		})
	}

	t.Run("a retry that succeeds returns its answer", func(t *testing.T) {
		t.Parallel()
		var n atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			if string(b) != `{"order_id":"o1"}` {
				t.Errorf("attempt %d body = %q; want the original body", n.Load()+1, b)
			}
			if n.Add(1) == 1 {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			w.WriteHeader(http.StatusCreated)
		}))
		defer srv.Close()
		d := New("x", testPolicy(), nil, nil)
		if status, err := call(t, d, Idempotent(context.Background()), http.MethodPost, srv.URL); status != 201 || err != nil {
			t.Fatalf("call = %d, %v; want 201 after one retry", status, err)
		}
		if d.Retries() != 1 {
			t.Errorf("Retries() = %d; want 1", d.Retries())
		}
	})

	t.Run("connection refused is retried", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		d := New("x", testPolicy(), nil, nil)
		if _, err := call(t, d, Idempotent(context.Background()), http.MethodPost, url); err == nil {
			t.Fatal("call to a closed port succeeded")
		}
		if d.Retries() != 2 {
			t.Errorf("Retries() = %d; want 2", d.Retries())
		}
	})
}

func TestDownstream_TimeoutPerAttempt(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.delay.Store(int64(5 * time.Second))
	p := testPolicy()
	p.Timeout = 100 * time.Millisecond
	d := New("provider", p, nil, nil)
	start := time.Now()
	_, err := call(t, d, Idempotent(context.Background()), http.MethodPost, s.URL)
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("call to a slow server = %v after %v; want a timeout after about 100ms", err, time.Since(start))
	}
	if s.hits.Load() != 1 || d.Retries() != 0 {
		t.Errorf("hits = %d, retries = %d; want 1, 0: a timed-out attempt is not retried", s.hits.Load(), d.Retries())
	}
}

func TestDownstream_CanceledCallerAbortsRetries(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.delay.Store(int64(5 * time.Second))
	d := New("x", testPolicy(), nil, nil)
	ctx, cancel := context.WithTimeout(Idempotent(context.Background()), 50*time.Millisecond)
	defer cancel()
	_, err := call(t, d, ctx, http.MethodPost, s.URL)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call = %v; want the caller's deadline", err)
	}
	if d.Retries() != 0 || s.hits.Load() != 1 {
		t.Errorf("retries = %d, hits = %d; want 0, 1", d.Retries(), s.hits.Load())
	}
}

func TestDownstream_BulkheadFullFailsFast(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	started := make(chan struct{}, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
	}))
	defer srv.Close()
	p := testPolicy()
	p.MaxConcurrent = 1
	d := New("x", p, nil, nil)

	var wg sync.WaitGroup
	wg.Go(func() {
		if status, err := call(t, d, context.Background(), http.MethodGet, srv.URL); status != 200 || err != nil {
			t.Errorf("first call = %d, %v; want 200", status, err)
		}
	})
	<-started
	start := time.Now()
	_, err := call(t, d, context.Background(), http.MethodGet, srv.URL)
	elapsed := time.Since(start)
	close(release)
	wg.Wait()
	var rej *RejectedError
	if !errors.As(err, &rej) || rej.Reason != ReasonBulkheadFull || !errors.Is(err, bulkhead.ErrFull) {
		t.Fatalf("second call = %v; want a bulkhead_full RejectedError", err)
	}
	if elapsed > 100*time.Millisecond {
		t.Errorf("rejected call took %v; want < 100ms", elapsed)
	}
	if d.Rejections(ReasonBulkheadFull) != 1 || d.Retries() != 0 || d.State() != circuitbreaker.ClosedState {
		t.Errorf("rejections = %d, retries = %d, state = %v; want 1, 0, closed (a full bulkhead is not the downstream's fault)",
			d.Rejections(ReasonBulkheadFull), d.Retries(), d.State())
	}
}

func TestReadPolicy(t *testing.T) {
	vars := map[string]string{"ORDER_BREAKER_FAILURE_THRESHOLD": "7", "ORDER_BREAKER_DELAY": "2s", "ORDER_BULKHEAD": "8"}
	r := env.New(func(k string) string { return vars[k] })
	p := ReadPolicy(r, "ORDER", 3*time.Second)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	want := DefaultPolicy(3 * time.Second)
	want.FailureThreshold, want.Delay, want.MaxConcurrent = 7, 2*time.Second, 8
	if p != want {
		t.Errorf("ReadPolicy = %+v; want %+v", p, want)
	}
	if err := p.Validate("ORDER"); err != nil {
		t.Errorf("Validate = %v", err)
	}
	bad := Policy{Timeout: time.Second, FailureThreshold: 5, Window: 2, Backoff: time.Second, MaxBackoff: time.Millisecond, MaxRetries: -1}
	err := bad.Validate("ORDER")
	for _, name := range []string{"ORDER_BREAKER_WINDOW", "ORDER_BREAKER_DELAY", "ORDER_BREAKER_SUCCESS_THRESHOLD", "ORDER_RETRY_MAX", "ORDER_RETRY_BACKOFF", "ORDER_BULKHEAD"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("Validate(bad) = %v; want it to name %s", err, name)
		}
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want int
	}{{0, 1}, {time.Millisecond, 1}, {time.Second, 1}, {1001 * time.Millisecond, 2}, {4500 * time.Millisecond, 5}}
	for _, tt := range tests {
		if got := RetryAfterSeconds(tt.d); got != tt.want {
			t.Errorf("RetryAfterSeconds(%v) = %d; want %d", tt.d, got, tt.want)
		}
	}
}

// TestDownstream_SendsBudget: every attempt tells the downstream how long
// it is waited for: the attempt's timeout, or the caller's remaining
// deadline when that is sooner.
func TestDownstream_SendsBudget(t *testing.T) {
	t.Parallel()
	got := make(chan string, 1)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get(RequestTimeoutHeader)
	}))
	t.Cleanup(s.Close)
	d := New("test", DefaultPolicy(4*time.Second), nil, nil)
	tests := []struct {
		name     string
		deadline time.Duration // 0: none
		min, max int64
	}{
		{name: "attempt timeout", min: 3900, max: 4000},
		{name: "caller's deadline", deadline: 1500 * time.Millisecond, min: 1000, max: 1500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.deadline)
				defer cancel()
			}
			if status, err := call(t, d, ctx, http.MethodGet, s.URL); status != 200 || err != nil {
				t.Fatalf("call = %d, %v; want 200", status, err)
			}
			h := <-got
			ms, err := strconv.ParseInt(h, 10, 64)
			if err != nil || ms < tt.min || ms > tt.max {
				t.Errorf("%s = %q; want %d–%d ms", RequestTimeoutHeader, h, tt.min, tt.max)
			}
		})
	}
}
