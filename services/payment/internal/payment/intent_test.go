package payment

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/pkg/dbtest"
	"github.com/orderflow/orderflow/services/payment/internal/provider"
)

// setConnections cuts (allow false) or restores the database behind pool
// for real: new connections are refused and every open one is terminated,
// as when Postgres goes away for a moment.
func setConnections(t *testing.T, pool *pgxpool.Pool, allow bool) {
	t.Helper()
	ctx := context.Background()
	db := pool.Config().ConnConfig.Database
	conn, err := pgx.Connect(ctx, dbtest.ServerURL())
	if err != nil {
		t.Errorf("connect to the server: %v", err)
		return
	}
	defer conn.Close(ctx)
	v := "true"
	if !allow {
		v = "false"
	}
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{db}.Sanitize()+" WITH ALLOW_CONNECTIONS "+v); err != nil {
		t.Errorf("ALTER DATABASE %s: %v", db, err)
	}
	if !allow {
		if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, db); err != nil {
			t.Errorf("terminate the backends of %s: %v", db, err)
		}
	}
}

// afterCharge is the real provider handler that runs hook once, after the
// first charge was made and before its answer is sent.
func afterCharge(inner http.Handler, hook func(w http.ResponseWriter, r *http.Request) bool) http.Handler {
	var done atomic.Bool
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/charges" || done.Load() {
			inner.ServeHTTP(w, r)
			return
		}
		done.Store(true)
		// The charge is made whatever happens to the caller meanwhile.
		rec := httptest.NewRecorder()
		inner.ServeHTTP(rec, r.WithContext(context.WithoutCancel(r.Context())))
		if !hook(w, r) {
			return // the answer is lost
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
}

// newIntentEnv is payment in front of the real provider, with a hook after
// the first charge.
func newIntentEnv(t *testing.T, timeout time.Duration, cfg Config, hook func(*testEnv, http.ResponseWriter, *http.Request) bool) *testEnv {
	t.Helper()
	var e *testEnv
	e = newEnv(t, newGuard(timeout), cfg, func(h http.Handler) http.Handler {
		return afterCharge(h, func(w http.ResponseWriter, r *http.Request) bool { return hook(e, w, r) })
	})
	return e
}

// cutStoreAfterCharge: Postgres goes away between the charge and the insert.
func cutStoreAfterCharge(t *testing.T) func(*testEnv, http.ResponseWriter, *http.Request) bool {
	return func(e *testEnv, _ http.ResponseWriter, _ *http.Request) bool {
		setConnections(t, e.pool, false)
		return true
	}
}

// loseAnswer: the charge is made and its answer never arrives.
func loseAnswer(_ *testEnv, _ http.ResponseWriter, r *http.Request) bool {
	<-r.Context().Done()
	return false
}

// pollList lists the order's payments until the answer is 200 (a pool may
// hand out a terminated connection or two after the database returns).
func pollList(t *testing.T, url, orderID string) result {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := do(t, "GET", url+"/v1/payments?order_id="+orderID, nil, "")
		if r.status == 200 || time.Now().After(deadline) {
			return r
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// wantUnknownOutcome checks the answer r to a capture with key k that the
// provider charged but payment could not record: the problem wantCode, one
// charge at the provider, and the intent kept pending (never released).
func wantUnknownOutcome(t *testing.T, e *testEnv, r result, k string, wantStatus int, wantCode string) {
	t.Helper()
	if r.status != wantStatus || r.body["code"] != wantCode {
		t.Fatalf("POST = %d %s; want %d %s", r.status, r.raw, wantStatus, wantCode)
	}
	if got := charges(t, e.sim); got != 1 {
		t.Fatalf("provider charges = %d; want 1", got)
	}
	if got := intentState(t, e.pool, k); got != IntentPending {
		t.Fatalf("intent of %s = %q; want %q", k, got, IntentPending)
	}
}

// wantOneCaptured checks that the list holds exactly the provider's one
// charge, captured, and returns the payment's id.
func wantOneCaptured(t *testing.T, sim *provider.Simulator, l result) string {
	t.Helper()
	ps, _ := l.body["payments"].([]any)
	if l.status != 200 || len(ps) != 1 {
		t.Fatalf("GET /v1/payments?order_id= = %d %s; want the captured charge", l.status, l.raw)
	}
	p := ps[0].(map[string]any)
	ch, err := sim.Get(context.Background(), p["provider_charge_id"].(string))
	if p["status"] != StatusCaptured || err != nil || ch.Status != provider.StatusSucceeded {
		t.Fatalf("listed %v, provider charge %+v, %v; want captured and succeeded", p, ch, err)
	}
	return p["id"].(string)
}

// refundAndCheckConserved refunds the payment and checks the provider's
// ledger: one charge, refunded in full.
func refundAndCheckConserved(t *testing.T, e *testEnv, paymentID string, amount int64) {
	t.Helper()
	if r := do(t, "POST", e.url+"/v1/payments/"+paymentID+"/refund", nil, ""); r.status != 200 || r.body["status"] != StatusRefunded {
		t.Fatalf("refund = %d %s; want 200 refunded", r.status, r.raw)
	}
	tot, err := e.sim.Totals(context.Background())
	want := provider.Totals{Charges: 1, CapturedCents: amount, Refunds: 1, RefundedCents: amount}
	if err != nil || tot != want {
		t.Errorf("provider totals = %+v, %v; want %+v", tot, err, want)
	}
}

// TestCreate_StoreFailsAfterCharge: the defect of the orphaned charge. The
// provider charges, then payment's Postgres goes away before the payment is
// recorded. The capture answers 503, and the charge must still be found
// and refunded: listed (settled by key) for the order service's
// compensation, or settled by the reconciler.
func TestCreate_StoreFailsAfterCharge(t *testing.T) {
	t.Parallel()
	for _, settle := range []string{"list", "reconciler"} {
		t.Run(settle, func(t *testing.T) {
			t.Parallel()
			e := newIntentEnv(t, 2*time.Second, Config{SettleAfter: time.Nanosecond}, cutStoreAfterCharge(t))
			orderID := newOrderID()
			r := do(t, "POST", e.url+"/v1/payments", key("cut"), payBody(orderID, 700, "pm_card_ok"))
			setConnections(t, e.pool, true)
			wantUnknownOutcome(t, e, r, "cut", 503, "database_unavailable")
			if settle == "reconciler" {
				deadline := time.Now().Add(30 * time.Second)
				for intentState(t, e.pool, "cut") == IntentPending && time.Now().Before(deadline) {
					if err := e.svc.Reconcile(context.Background()); err != nil {
						t.Logf("Reconcile = %v (retrying)", err)
						time.Sleep(100 * time.Millisecond)
					}
				}
				if got := e.svc.settledCounts()[SettledCaptured]; got != 1 {
					t.Errorf("settled captured = %d; want 1", got)
				}
			}
			id := wantOneCaptured(t, e.sim, pollList(t, e.url, orderID))
			// A retry of the capture replays the recorded payment.
			again := do(t, "POST", e.url+"/v1/payments", key("cut"), payBody(orderID, 700, "pm_card_ok"))
			if again.status != 201 || again.body["id"] != id || again.header.Get("Idempotent-Replayed") != "true" {
				t.Errorf("retry = %d %s; want the replayed 201 of %s", again.status, again.raw, id)
			}
			refundAndCheckConserved(t, e, id, 700)
		})
	}
}

// TestCreate_StoreDownBeforeCharge: with Postgres away before the call no
// intent can be written, so nothing is charged.
func TestCreate_StoreDownBeforeCharge(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, 2*time.Second)
	setConnections(t, e.pool, false)
	r := do(t, "POST", e.url+"/v1/payments", key("down"), payBody(newOrderID(), 700, "pm_card_ok"))
	setConnections(t, e.pool, true)
	if r.status != 503 || r.body["code"] != "database_unavailable" {
		t.Errorf("POST with the store down = %d %s; want 503 database_unavailable", r.status, r.raw)
	}
	if got := charges(t, e.sim); got != 0 {
		t.Errorf("provider charges = %d; want 0", got)
	}
}

// TestCreate_ProviderTimeoutAfterCharge: the provider charges but its answer
// is lost (504). The charge is found by key: by the list, the reconciler or
// a retry, which re-sends the same provider key and charges nothing more.
func TestCreate_ProviderTimeoutAfterCharge(t *testing.T) {
	t.Parallel()
	for _, settle := range []string{"list", "reconciler", "retry"} {
		t.Run(settle, func(t *testing.T) {
			t.Parallel()
			e := newIntentEnv(t, 300*time.Millisecond, Config{SettleAfter: time.Nanosecond}, loseAnswer)
			orderID := newOrderID()
			body := payBody(orderID, 900, "pm_card_ok")
			wantUnknownOutcome(t, e, do(t, "POST", e.url+"/v1/payments", key("lost"), body), "lost", 504, "provider_timeout")
			var id string
			switch settle {
			case "reconciler":
				if err := e.svc.Reconcile(context.Background()); err != nil {
					t.Fatalf("Reconcile = %v", err)
				}
				if got := intentState(t, e.pool, "lost"); got != IntentCaptured {
					t.Fatalf("intent after Reconcile = %q; want captured", got)
				}
			case "retry":
				again := do(t, "POST", e.url+"/v1/payments", key("lost"), body)
				if again.status != 201 || again.header.Get("Idempotent-Replayed") != "" {
					t.Fatalf("retry = %d %s; want a fresh 201", again.status, again.raw)
				}
				id = again.body["id"].(string)
			}
			got := wantOneCaptured(t, e.sim, pollList(t, e.url, orderID))
			if id != "" && got != id {
				t.Errorf("listed payment %s; want the retry's %s", got, id)
			}
			if n := charges(t, e.sim); n != 1 {
				t.Errorf("provider charges after settling = %d; want 1", n)
			}
			refundAndCheckConserved(t, e, got, 900)
		})
	}
}

// TestSettle_NoCharge: an intent whose charge never happened (the provider
// timed out before charging) is refused by the list while it is within its
// grace period, so the order's compensation comes back later, and
// abandoned after it: nothing to refund, and the key may be used again.
func TestSettle_NoCharge(t *testing.T) {
	t.Parallel()
	e := newEnv(t, newGuard(100*time.Millisecond), Config{SettleAfter: time.Hour}, nil)
	sim, svc, pool, url := e.sim, e.svc, e.pool, e.url
	sim.Update(provider.Patch{LatencyMS: ptr(60000)})
	orderID := newOrderID()
	body := payBody(orderID, 300, "pm_card_ok")
	if r := do(t, "POST", url+"/v1/payments", key("none"), body); r.status != 504 {
		t.Fatalf("POST to a slow provider = %d %s; want 504", r.status, r.raw)
	}
	sim.Update(provider.Patch{LatencyMS: ptr(0)})

	l := do(t, "GET", url+"/v1/payments?order_id="+orderID, nil, "")
	if l.status != 503 || l.body["code"] != "payment_unsettled" || l.header.Get("Retry-After") == "" {
		t.Errorf("list within the grace period = %d %s; want 503 payment_unsettled with Retry-After", l.status, l.raw)
	}
	if err := svc.Reconcile(context.Background()); err != nil {
		t.Fatalf("Reconcile = %v", err)
	}
	if got := intentState(t, pool, "none"); got != IntentPending {
		t.Fatalf("intent within its grace period after Reconcile = %q; want still pending", got)
	}

	// Two hours later, by the database's clock.
	if _, err := pool.Exec(context.Background(), `UPDATE idempotency_keys SET created_at = created_at - interval '2 hours'`); err != nil {
		t.Fatal(err)
	}
	if l := do(t, "GET", url+"/v1/payments?order_id="+orderID, nil, ""); l.status != 200 || l.raw != "{\"payments\":[]}\n" {
		t.Errorf("list after the grace period = %d %s; want 200 with none", l.status, l.raw)
	}
	if got := countKeys(t, pool, "none"); got != 0 {
		t.Errorf("key rows after the intent was abandoned = %d; want 0", got)
	}
	if got := svc.settledCounts()[SettledAbandoned]; got != 1 {
		t.Errorf("settled abandoned = %d; want 1", got)
	}
	if r := do(t, "POST", url+"/v1/payments", key("none"), body); r.status != 201 || r.header.Get("Idempotent-Replayed") != "" {
		t.Errorf("the key again = %d %s; want a fresh 201", r.status, r.raw)
	}
	if got := charges(t, sim); got != 1 {
		t.Errorf("provider charges = %d; want 1", got)
	}
}

// TestReconcile_ProviderDown: while the provider cannot be asked, unknown
// intents stay pending, are counted, and are settled on a later round.
func TestReconcile_ProviderDown(t *testing.T) {
	t.Parallel()
	e := newIntentEnv(t, 300*time.Millisecond, Config{SettleAfter: time.Nanosecond}, loseAnswer)
	orderID := newOrderID()
	if r := do(t, "POST", e.url+"/v1/payments", key("k"), payBody(orderID, 400, "pm_card_ok")); r.status != 504 {
		t.Fatalf("POST = %d %s; want 504", r.status, r.raw)
	}
	e.sim.Update(provider.Patch{Outage: ptr(true)})
	if err := e.svc.Reconcile(context.Background()); err == nil {
		t.Error("Reconcile with the provider down = nil; want the look-up's error")
	}
	if got := intentState(t, e.pool, "k"); got != IntentPending {
		t.Fatalf("intent = %q; want still pending", got)
	}
	if got := e.svc.settledCounts()[SettledUnreachable]; got == 0 {
		t.Error("settled unreachable = 0; want the failed look-up counted")
	}
	if l := do(t, "GET", e.url+"/v1/payments?order_id="+orderID, nil, ""); l.status != 503 || l.body["code"] != "payment_unsettled" {
		t.Errorf("list with the provider down = %d %s; want 503 payment_unsettled", l.status, l.raw)
	}
	e.sim.Update(provider.Patch{Outage: ptr(false)})
	if err := e.svc.Reconcile(context.Background()); err != nil {
		t.Fatalf("Reconcile after the provider is back = %v", err)
	}
	wantOneCaptured(t, e.sim, do(t, "GET", e.url+"/v1/payments?order_id="+orderID, nil, ""))
}

// TestRunReconciler settles in the background and stops with its context.
func TestRunReconciler(t *testing.T) {
	t.Parallel()
	e := newIntentEnv(t, 300*time.Millisecond, Config{SettleAfter: time.Nanosecond}, loseAnswer)
	if r := do(t, "POST", e.url+"/v1/payments", key("bg"), payBody(newOrderID(), 400, "pm_card_ok")); r.status != 504 {
		t.Fatalf("POST = %d %s; want 504", r.status, r.raw)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.svc.RunReconciler(ctx, 20*time.Millisecond) }()
	deadline := time.Now().Add(30 * time.Second)
	for intentState(t, e.pool, "bg") != IntentCaptured {
		if time.Now().After(deadline) {
			t.Fatal("the reconciler did not settle the intent within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("RunReconciler did not return after its context ended")
	}
}
