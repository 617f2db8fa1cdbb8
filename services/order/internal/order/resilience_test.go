package order

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"

	"github.com/orderflow/orderflow/pkg/resilience"
)

// httpDownstream is inventory or payment over real HTTP: it answers the
// contract, or fails the way a test tells it to, and counts each call.
type httpDownstream struct {
	*httptest.Server
	mu      sync.Mutex
	status  int           // forced answer for every call (0: answer normally)
	delay   time.Duration // before answering
	block   chan struct{} // when set, calls wait for it to close
	failN   int           // fail this many calls with 503 before answering normally
	calls   map[string]int
	entered chan string
}

func (d *httpDownstream) count(op string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls[op]
}

func (d *httpDownstream) set(fn func(d *httpDownstream)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fn(d)
}

// serve counts the call, applies the forced behaviour and, when there is
// none, calls answer.
func (d *httpDownstream) serve(op string, answer func(w http.ResponseWriter, r *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		d.mu.Lock()
		d.calls[op]++
		status, delay, block := d.status, d.delay, d.block
		failing := d.failN > 0
		if failing {
			d.failN--
		}
		entered := d.entered
		d.mu.Unlock()
		if entered != nil {
			select {
			case entered <- op:
			default:
			}
		}
		if block != nil {
			select {
			case <-block:
			case <-r.Context().Done():
				return
			}
		}
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		switch {
		case failing:
			status = http.StatusServiceUnavailable
		case status == 0:
			answer(w, r)
			return
		}
		code := map[int]string{http.StatusConflict: "out_of_stock", http.StatusPaymentRequired: "payment_declined"}[status]
		if code == "" {
			code = "forced"
		}
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, `{"status":`+strconv.Itoa(status)+`,"code":"`+code+`","skus":["SKU-2"]}`)
	}
}

func newHTTPDownstream(t *testing.T, routes func(d *httpDownstream, mux *http.ServeMux)) *httpDownstream {
	t.Helper()
	d := &httpDownstream{calls: map[string]int{}}
	mux := http.NewServeMux()
	routes(d, mux)
	d.Server = httptest.NewServer(mux)
	t.Cleanup(d.Close)
	return d
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// inventoryRoutes reserve everything at 1250 cents, except SKU-OOS (409).
func inventoryRoutes(d *httpDownstream, mux *http.ServeMux) {
	mux.Handle("POST /v1/reservations", d.serve("reserve", func(w http.ResponseWriter, r *http.Request) {
		// The body was drained by serve; the order id is not needed here.
		if r.URL.Query().Get("oos") != "" {
			return
		}
		writeJSON(w, http.StatusCreated, map[string]any{"order_id": "x", "status": "reserved", "currency": "USD",
			"items": []map[string]any{{"sku": "SKU-00001", "quantity": 2, "unit_price_cents": 1250},
				{"sku": "SKU-2", "quantity": 1, "unit_price_cents": 1250}}})
	}))
	mux.Handle("POST /v1/reservations/{id}/commit", d.serve("commit", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"order_id": r.PathValue("id"), "status": "committed"})
	}))
	mux.Handle("POST /v1/reservations/{id}/release", d.serve("release", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"order_id": r.PathValue("id"), "status": "released"})
	}))
}

// paymentRoutes capture every payment, except pm_card_declined (402).
func paymentRoutes(d *httpDownstream, mux *http.ServeMux) {
	var n atomic.Int64
	mux.Handle("POST /v1/payments", d.serve("capture", func(w http.ResponseWriter, r *http.Request) {
		orderID := r.Header.Get("Idempotency-Key")
		writeJSON(w, http.StatusCreated, map[string]any{"id": "pay_" + strconv.FormatInt(n.Add(1), 10),
			"order_id": orderID, "status": "captured"})
	}))
	mux.Handle("POST /v1/payments/{id}/refund", d.serve("refund", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"id": r.PathValue("id"), "status": "refunded"})
	}))
	mux.Handle("GET /v1/payments", d.serve("list", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"payments": []any{}})
	}))
}

// guarded is the service with the real HTTP clients and policies in front
// of HTTP downstreams.
type guarded struct {
	*harness
	invSrv, paySrv     *httpDownstream
	invGuard, payGuard *resilience.Downstream
	policy             resilience.Policy
}

func testPolicy() resilience.Policy {
	p := resilience.DefaultPolicy(300 * time.Millisecond)
	p.FailureThreshold, p.Window = 3, 5
	p.Delay = 1500 * time.Millisecond
	p.SuccessThreshold = 2
	p.Backoff, p.MaxBackoff = 10*time.Millisecond, 20*time.Millisecond
	return p
}

func newGuarded(t *testing.T, p resilience.Policy) *guarded {
	t.Helper()
	g := &guarded{harness: newHarness(t, Config{}), policy: p}
	g.invSrv = newHTTPDownstream(t, inventoryRoutes)
	g.paySrv = newHTTPDownstream(t, paymentRoutes)
	log := slog.New(slog.DiscardHandler)
	g.invGuard = resilience.New("inventory", p, nil, log)
	g.payGuard = resilience.New("payment", p, nil, log)
	g.serve(t, NewInventoryClient(g.invSrv.URL, g.invGuard), NewPaymentClient(g.paySrv.URL, g.payGuard),
		Config{CallTimeout: p.Budget(), RecoveryAfter: time.Hour})
	return g
}

// timedPost places an order and returns the answer and how long it took.
func (g *guarded) timedPost(t *testing.T, key, body string) (*httptest.ResponseRecorder, time.Duration) {
	t.Helper()
	start := time.Now()
	w := g.post(t, key, body)
	return w, time.Since(start)
}

func TestResilience_BreakerOpensFailsFastAndRecovers(t *testing.T) {
	t.Parallel()
	g := newGuarded(t, testPolicy())
	g.invSrv.set(func(d *httpDownstream) { d.status = http.StatusServiceUnavailable })

	// One order: three reserve attempts (the call is retried), three
	// failures, the breaker opens; its release is already rejected.
	w := g.post(t, "k1", okBody)
	wantProblem(t, w, http.StatusServiceUnavailable, "dependency_unavailable")
	if got := g.invSrv.count("reserve"); got != 3 {
		t.Errorf("reserve attempts = %d; want 3 (1 + 2 retries)", got)
	}
	if g.invGuard.State() != circuitbreaker.OpenState {
		t.Fatalf("inventory breaker = %v; want open", g.invGuard.State())
	}

	// The next order fails fast, without a call, with Retry-After.
	w, elapsed := g.timedPost(t, "k2", okBody)
	failed := wantUnavailable(t, w)
	if elapsed > 100*time.Millisecond {
		t.Errorf("order with the breaker open took %v; want < 100ms", elapsed)
	}
	if ra := w.Header().Get("Retry-After"); ra != "2" && ra != "1" {
		t.Errorf("Retry-After = %q; want the breaker's remaining 1.5s rounded up (2, or 1 if a half second passed)", ra)
	}
	if got := g.invSrv.count("reserve") + g.invSrv.count("release"); got != 3 {
		t.Errorf("inventory calls = %d; want 3: nothing more once the breaker is open", got)
	}
	got := g.order(t, failed)
	if got.Status != StatusFailed || *got.FailureReason != ReasonInventoryUnavailable {
		t.Errorf("order = %+v; want failed/inventory_unavailable", got)
	}
	// The release was rejected too: the compensation is left to the
	// recovery loop, never lost.
	if got.CompensateAfter == nil {
		t.Errorf("compensate_after is not set after a rejected release")
	}
	if n := g.invGuard.Rejections(resilience.ReasonBreakerOpen); n != 3 {
		t.Errorf("breaker_open rejections = %d; want 3 (release of k1, reserve and release of k2)", n)
	}

	// Inventory heals; after the delay the half-open probes (reserve,
	// commit) succeed and close the breaker.
	g.invSrv.set(func(d *httpDownstream) { d.status = 0 })
	time.Sleep(g.policy.Delay + 100*time.Millisecond)
	w = g.post(t, "k3", okBody)
	if w.Code != http.StatusCreated {
		t.Fatalf("order after the dependency healed = %d %s; want 201", w.Code, w.Body)
	}
	if g.invGuard.State() != circuitbreaker.ClosedState {
		t.Errorf("inventory breaker = %v; want closed after good probes", g.invGuard.State())
	}
	// The recovery loop now releases the failed order's stock.
	g.recover(t)
	if got := g.order(t, failed); got.CompensateAfter != nil {
		t.Errorf("compensate_after = %v after recovery; want done", got.CompensateAfter)
	}
}

func TestResilience_BusinessAnswersNeverTrip(t *testing.T) {
	t.Parallel()
	g := newGuarded(t, testPolicy())
	g.paySrv.set(func(d *httpDownstream) { d.status = http.StatusPaymentRequired })
	for i := range 10 {
		w := g.post(t, "declined-"+strconv.Itoa(i), okBody)
		wantProblem(t, w, http.StatusPaymentRequired, "payment_declined")
	}
	g.invSrv.set(func(d *httpDownstream) { d.status = http.StatusConflict })
	for i := range 10 {
		w := g.post(t, "conflict-"+strconv.Itoa(i), okBody)
		wantProblem(t, w, http.StatusConflict, "out_of_stock")
	}
	if g.payGuard.State() != circuitbreaker.ClosedState || g.invGuard.State() != circuitbreaker.ClosedState {
		t.Errorf("breakers = %v, %v; want closed: 402 and 409 are answers, not failures", g.payGuard.State(), g.invGuard.State())
	}
	if got := g.paySrv.count("capture"); got != 10 {
		t.Errorf("captures = %d; want 10 (a decline is not retried)", got)
	}
	if g.payGuard.Retries() != 0 || g.invGuard.Retries() != 0 {
		t.Errorf("retries = %d, %d; want 0", g.payGuard.Retries(), g.invGuard.Retries())
	}
}

func TestResilience_RetriesIdempotentCalls(t *testing.T) {
	t.Parallel()
	g := newGuarded(t, testPolicy())
	// The first capture and the first commit fail; both are idempotent
	// (Idempotency-Key, order id) and are retried.
	g.paySrv.set(func(d *httpDownstream) { d.failN = 1 })
	w := g.post(t, "k1", okBody)
	if w.Code != http.StatusCreated {
		t.Fatalf("order = %d %s; want 201 after a retried capture", w.Code, w.Body)
	}
	if got := g.paySrv.count("capture"); got != 2 {
		t.Errorf("capture attempts = %d; want 2", got)
	}
	if g.payGuard.Retries() != 1 {
		t.Errorf("payment retries = %d; want 1", g.payGuard.Retries())
	}
	g.invSrv.set(func(d *httpDownstream) { d.failN = 2 })
	if w := g.post(t, "k2", okBody); w.Code != http.StatusCreated {
		t.Fatalf("order = %d %s; want 201 after a retried reserve", w.Code, w.Body)
	}
	if g.invGuard.Retries() != 2 {
		t.Errorf("inventory retries = %d; want 2", g.invGuard.Retries())
	}
}

func TestResilience_BulkheadFullFailsFast(t *testing.T) {
	t.Parallel()
	p := testPolicy()
	p.MaxConcurrent = 1
	p.Timeout = 5 * time.Second
	g := newGuarded(t, p)
	block := make(chan struct{})
	entered := make(chan string, 1)
	g.invSrv.set(func(d *httpDownstream) { d.block, d.entered = block, entered })

	first := make(chan *httptest.ResponseRecorder, 1)
	go func() { first <- g.post(t, "slow", okBody) }()
	<-entered // the first order holds inventory's only permit

	w, elapsed := g.timedPost(t, "fast", okBody)
	wantProblem(t, w, http.StatusServiceUnavailable, "dependency_unavailable")
	if elapsed > 100*time.Millisecond {
		t.Errorf("order with the bulkhead full took %v; want < 100ms", elapsed)
	}
	if w.Header().Get("Retry-After") != "1" {
		t.Errorf("Retry-After = %q; want 1", w.Header().Get("Retry-After"))
	}
	if g.invGuard.Rejections(resilience.ReasonBulkheadFull) == 0 {
		t.Errorf("no bulkhead_full rejection counted")
	}
	g.invSrv.set(func(d *httpDownstream) { d.block = nil })
	close(block)
	if w := <-first; w.Code != http.StatusCreated {
		t.Errorf("first order = %d %s; want 201", w.Code, w.Body)
	}
	if g.invGuard.State() != circuitbreaker.ClosedState {
		t.Errorf("inventory breaker = %v; want closed: a full bulkhead is not inventory's fault", g.invGuard.State())
	}
}

func TestResilience_SlowPaymentTimesOutAndCompensates(t *testing.T) {
	t.Parallel()
	g := newGuarded(t, testPolicy()) // 300ms per attempt
	g.paySrv.set(func(d *httpDownstream) { d.delay = 5 * time.Second })
	w, elapsed := g.timedPost(t, "k1", okBody)
	id := wantUnavailable(t, w)
	if elapsed > 2*time.Second {
		t.Errorf("order with a slow payment took %v; want about one attempt timeout (300ms)", elapsed)
	}
	if got := g.paySrv.count("capture"); got != 1 {
		t.Errorf("capture attempts = %d; want 1: a timed-out attempt is not retried", got)
	}
	if got := g.invSrv.count("release"); got != 1 {
		t.Errorf("releases = %d; want 1 (the reserved stock is released at once)", got)
	}
	got := g.order(t, id)
	if got.Status != StatusFailed || *got.FailureReason != ReasonPaymentUnavailable || got.CompensateAfter == nil {
		t.Errorf("order = %+v; want failed/payment_unavailable with the refund check scheduled", got)
	}
}
