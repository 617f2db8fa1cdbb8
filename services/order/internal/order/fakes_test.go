package order

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/pkg/auth"
	"github.com/orderflow/orderflow/pkg/dbtest"
)

// fakeInventory is a hand-written inventory: outcomes are set per test and
// every call is recorded.
type fakeInventory struct {
	mu            sync.Mutex
	reserveErr    error
	reserveStatus string // "reserved" when empty
	reserveDelay  time.Duration
	commitErr     error
	releaseErr    error
	// releaseDelay is how long a release takes (or hangs, until its context
	// ends); releasing and maxReleasing count the releases in flight.
	releaseDelay time.Duration
	releasing    int
	maxReleasing int
	onCommit     func()
	calls        []string
}

func (f *fakeInventory) record(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
}

func (f *fakeInventory) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeInventory) set(fn func(f *fakeInventory)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// price is the fake catalogue: every SKU costs 100 cents times its length.
func price(sku string) int64 { return int64(100 * len(sku)) }

func (f *fakeInventory) Reserve(ctx context.Context, orderID string, items []Item) (Reservation, error) {
	f.record("reserve")
	f.mu.Lock()
	err, status, delay := f.reserveErr, f.reserveStatus, f.reserveDelay
	f.mu.Unlock()
	if err := pause(ctx, delay); err != nil {
		return Reservation{}, err
	}
	if err != nil {
		return Reservation{}, err
	}
	if status == "" {
		status = "reserved"
	}
	res := Reservation{OrderID: orderID, Status: status, Currency: "USD"}
	for _, it := range items {
		res.Items = append(res.Items, Item{SKU: it.SKU, Quantity: it.Quantity, UnitPriceCents: price(it.SKU)})
	}
	return res, nil
}

func (f *fakeInventory) Commit(ctx context.Context, orderID string) error {
	f.record("commit")
	f.mu.Lock()
	err, hook := f.commitErr, f.onCommit
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	return err
}

func (f *fakeInventory) Release(ctx context.Context, orderID string) error {
	f.record("release")
	f.mu.Lock()
	err, delay := f.releaseErr, f.releaseDelay
	f.releasing++
	f.maxReleasing = max(f.maxReleasing, f.releasing)
	f.mu.Unlock()
	defer f.set(func(f *fakeInventory) { f.releasing-- })
	if err := pause(ctx, delay); err != nil {
		return err
	}
	return err
}

// Releasing returns how many releases are in flight now, and the most
// that ever were at once.
func (f *fakeInventory) Releasing() (now, most int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.releasing, f.maxReleasing
}

// pause waits d, or until ctx ends (its error).
func pause(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fakePayments is a hand-written payment service. When settleOnError is
// set, a failing capture still captures: the answer was lost, not the
// payment. When refundHangs is set, a refund answers only when its context
// ends, the way a downstream that accepted the connection and went silent
// does; onHang, when set, is told of each hanging refund.
type fakePayments struct {
	mu            sync.Mutex
	captureErr    error
	settleOnError bool
	refundErr     error
	refundHangs   bool
	onHang        func(paymentID string)
	listErr       error
	payments      map[string][]Payment // by order id
	captures      []PaymentRequest
	refunds       []string
	n             int
}

// RetryAfter is 0: the fake has no circuit breaker.
func (f *fakeInventory) RetryAfter() time.Duration { return 0 }

// RetryAfter is 0: the fake has no circuit breaker.
func (f *fakePayments) RetryAfter() time.Duration { return 0 }

func (f *fakePayments) set(fn func(f *fakePayments)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakePayments) Capture(ctx context.Context, p PaymentRequest) (Payment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.captures = append(f.captures, p)
	if f.captureErr != nil && !f.settleOnError {
		return Payment{}, f.captureErr
	}
	if f.payments == nil {
		f.payments = map[string][]Payment{}
	}
	var pay Payment
	if existing := f.payments[p.OrderID]; len(existing) > 0 {
		pay = existing[0] // idempotent per order id
	} else {
		f.n++
		pay = Payment{ID: "pay_" + strings.Repeat("x", f.n), OrderID: p.OrderID, Status: "captured"}
		f.payments[p.OrderID] = []Payment{pay}
	}
	if f.captureErr != nil {
		return Payment{}, f.captureErr
	}
	return pay, nil
}

func (f *fakePayments) Refund(ctx context.Context, paymentID string) error {
	f.mu.Lock()
	f.refunds = append(f.refunds, paymentID)
	if f.refundHangs {
		hook := f.onHang
		f.mu.Unlock()
		if hook != nil {
			hook(paymentID)
		}
		<-ctx.Done()
		return ctx.Err()
	}
	defer f.mu.Unlock()
	if f.refundErr != nil {
		return f.refundErr
	}
	for id, ps := range f.payments {
		for i := range ps {
			if ps[i].ID == paymentID {
				f.payments[id][i].Status = "refunded"
			}
		}
	}
	return nil
}

func (f *fakePayments) ListByOrder(ctx context.Context, orderID string) ([]Payment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.listErr != nil {
		return nil, f.listErr
	}
	return slices.Clone(f.payments[orderID]), nil
}

func (f *fakePayments) Refunds() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.refunds)
}

func (f *fakePayments) Captures() []PaymentRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.captures)
}

var errDown = errors.New("connection refused")

// harness is a Service on a fresh database with fake downstreams.
type harness struct {
	svc  *Service
	inv  *fakeInventory
	pay  *fakePayments
	pool *pgxpool.Pool
	h    http.Handler
	log  *slog.Logger
	// metrics reads what svc recorded.
	metrics *sdkmetric.ManualReader
	// caller is who sends the requests (customerCus1 unless a test
	// changes it; the zero Principal sends none).
	caller auth.Principal
}

// The callers of the tests.
var (
	customerCus1 = auth.Principal{Subject: "cus_1", ClientID: "orderflow-cli", Scopes: []string{auth.ScopeOrders}}
	customerCus2 = auth.Principal{Subject: "cus_2", ClientID: "orderflow-cli", Scopes: []string{auth.ScopeOrders}}
	operator     = auth.Principal{Subject: "orderflow-admin", ClientID: "orderflow-admin", Scopes: []string{auth.ScopeAdmin}}
)

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	fsys, err := migrations.For("order")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{inv: &fakeInventory{}, pay: &fakePayments{}, pool: dbtest.NewPool(t, fsys), caller: customerCus1}
	h.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		h.log = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	h.serve(t, h.inv, h.pay, cfg)
	return h
}

// serve makes h a Service over inv and pay with cfg (CallTimeout 2 s and
// RequestTimeout 10 s when zero), instrumented, behind its handler.
func (h *harness) serve(t *testing.T, inv Inventory, pay Payments, cfg Config) {
	t.Helper()
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = 2 * time.Second
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	h.svc = NewService(NewStore(h.pool), inv, pay, cfg, h.log)
	h.metrics = sdkmetric.NewManualReader()
	if err := h.svc.Instrument(sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.metrics)).Meter("test")); err != nil {
		t.Fatal(err)
	}
	h.h = h.asCaller(NewHandler(h.log, h.svc, nil, nil, nil, nil))
}

// metric returns what svc recorded of the metric name by the value of its
// attribute key ("" for none): a counter's or gauge's value, a histogram's
// count.
func (h *harness) metric(t *testing.T, name, key string) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := h.metrics.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("collect metrics: %v", err)
	}
	got := map[string]int64{}
	add := func(attrs attribute.Set, n int64) {
		v, _ := attrs.Value(attribute.Key(key))
		got[v.AsString()] += n
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					add(p.Attributes, p.Value)
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					add(p.Attributes, p.Value)
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					add(p.Attributes, int64(p.Count))
				}
			default:
				t.Fatalf("metric %s is a %T", name, m.Data)
			}
		}
	}
	return got
}

// asCaller sends every request to routes as h.caller, the way the token
// verifier would set it: who may do what with a verified token is what
// these tests check (tokens themselves: pkg/auth and e2e).
func (h *harness) asCaller(routes http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.caller.Subject != "" {
			r = r.WithContext(auth.WithPrincipal(r.Context(), h.caller))
		}
		routes.ServeHTTP(w, r)
	})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

const okBody = `{"customer_id":"cus_1","email":"a@example.com","items":[{"sku":"SKU-00001","quantity":2},{"sku":"SKU-2","quantity":1}],"payment_method":"pm_card_ok"}`

// post sends POST /v1/orders with key (no header when empty).
func (h *harness) post(t *testing.T, key, body string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/v1/orders", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if key != "" {
		r.Header.Set("Idempotency-Key", key)
	}
	w := httptest.NewRecorder()
	h.h.ServeHTTP(w, r)
	return w
}

// confirmed places an order with okBody under key and returns it
// confirmed.
func (h *harness) confirmed(t *testing.T, key string) orderResponse {
	t.Helper()
	w := h.post(t, key, okBody)
	if w.Code != http.StatusCreated {
		t.Fatalf("POST /v1/orders = %d %s; want 201", w.Code, w.Body)
	}
	return decodeOrder(t, w)
}

func (h *harness) do(t *testing.T, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	w := httptest.NewRecorder()
	h.h.ServeHTTP(w, r)
	return w
}

// recover runs one round of the recovery loop and fails the test on its
// error.
func (h *harness) recover(t *testing.T) {
	t.Helper()
	if err := h.svc.Recover(context.Background()); err != nil {
		t.Fatalf("Recover = %v", err)
	}
}

// column returns the one text column of the rows q selects.
func (h *harness) column(t *testing.T, q string, args ...any) []string {
	t.Helper()
	rows, err := h.pool.Query(context.Background(), q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return got
}

func (h *harness) count(t *testing.T, q string, args ...any) int {
	t.Helper()
	var n int
	if err := h.pool.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}
