package payment

import (
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"

	"github.com/orderflow/orderflow/pkg/resilience"
	"github.com/orderflow/orderflow/services/payment/internal/provider"
)

// guardedEnv is the payment handler with its provider client behind a
// breaker with a short delay, in front of the real provider handler.
func guardedEnv(t *testing.T, p resilience.Policy) (*provider.Simulator, *resilience.Downstream, string) {
	t.Helper()
	guard := resilience.New("provider", p, nil, slog.New(slog.DiscardHandler))
	e := newEnv(t, guard, Config{}, nil)
	return e.sim, guard, e.url
}

func guardedPolicy() resilience.Policy {
	p := resilience.DefaultPolicy(200 * time.Millisecond)
	p.FailureThreshold, p.Window = 3, 5
	p.Delay = 1500 * time.Millisecond
	p.SuccessThreshold = 1
	p.Backoff, p.MaxBackoff = 10*time.Millisecond, 20*time.Millisecond
	return p
}

func TestProviderBreaker_OutageFailsFastAndHeals(t *testing.T) {
	t.Parallel()
	sim, guard, url := guardedEnv(t, guardedPolicy())
	sim.Update(provider.Patch{Outage: ptr(true)})

	// The provider's 503 carries Retry-After, so a charge is not retried;
	// three failed payments open the breaker.
	for i := range 3 {
		r := do(t, "POST", url+"/v1/payments", key("p1-"+strconv.Itoa(i)), payBody(newOrderID(), 300, "pm_card_ok"))
		if r.status != 503 || r.body["code"] != "provider_unavailable" {
			t.Fatalf("POST during the outage = %d %s; want 503 provider_unavailable", r.status, r.raw)
		}
	}
	if guard.State() != circuitbreaker.OpenState || guard.Retries() != 0 {
		t.Fatalf("breaker %v after %d retries; want open after 0", guard.State(), guard.Retries())
	}

	start := time.Now()
	r := do(t, "POST", url+"/v1/payments", key("p2"), payBody(newOrderID(), 300, "pm_card_ok"))
	elapsed := time.Since(start)
	if r.status != 503 || r.body["code"] != "provider_unavailable" || r.header.Get("Retry-After") == "" {
		t.Fatalf("POST with the breaker open = %d %s; want 503 provider_unavailable with Retry-After", r.status, r.raw)
	}
	if elapsed > 100*time.Millisecond {
		t.Errorf("POST with the breaker open took %v; want < 100ms", elapsed)
	}
	if guard.Rejections(resilience.ReasonBreakerOpen) != 1 {
		t.Errorf("breaker_open rejections = %d; want 1", guard.Rejections(resilience.ReasonBreakerOpen))
	}

	// The operator heals the provider through payment while the breaker
	// is open: admin calls do not go through it.
	auth := map[string]string{"Authorization": "Bearer " + testToken}
	if r := do(t, "PUT", url+"/admin/provider", auth, `{"outage":false}`); r.status != 200 {
		t.Fatalf("PUT /admin/provider with the breaker open = %d %s; want 200", r.status, r.raw)
	}
	time.Sleep(guardedPolicy().Delay + 100*time.Millisecond)
	r = do(t, "POST", url+"/v1/payments", key("p2"), payBody(newOrderID(), 300, "pm_card_ok"))
	if r.status != 201 {
		t.Fatalf("POST after the provider healed = %d %s; want 201", r.status, r.raw)
	}
	if guard.State() != circuitbreaker.ClosedState {
		t.Errorf("breaker = %v after a good probe; want closed", guard.State())
	}
}

func TestProviderBreaker_SlowProviderTimesOutThenFailsFast(t *testing.T) {
	t.Parallel()
	sim, guard, url := guardedEnv(t, guardedPolicy()) // 200ms per attempt
	sim.Update(provider.Patch{LatencyMS: ptr(5000)})
	for i := range 3 {
		start := time.Now()
		r := do(t, "POST", url+"/v1/payments", key("slow"+strconv.Itoa(i)), payBody(newOrderID(), 300, "pm_card_ok"))
		if r.status != 504 || r.body["code"] != "provider_timeout" {
			t.Fatalf("POST %d to a slow provider = %d %s; want 504 provider_timeout", i, r.status, r.raw)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("POST %d took %v; want about the 200ms attempt timeout, not retried", i, d)
		}
	}
	if guard.Retries() != 0 {
		t.Errorf("retries = %d; want 0: a timed-out attempt is not retried", guard.Retries())
	}
	if guard.State() != circuitbreaker.OpenState {
		t.Fatalf("breaker = %v after 3 timeouts; want open", guard.State())
	}
	r := do(t, "POST", url+"/v1/payments", key("slow-fast"), payBody(newOrderID(), 300, "pm_card_ok"))
	if r.status != 503 || r.body["code"] != "provider_unavailable" {
		t.Errorf("POST with the breaker open = %d %s; want 503 provider_unavailable", r.status, r.raw)
	}
}

func TestProviderBreaker_DeclinesNeverTrip(t *testing.T) {
	t.Parallel()
	_, guard, url := guardedEnv(t, guardedPolicy())
	for i := range 10 {
		r := do(t, "POST", url+"/v1/payments", key("d"+strconv.Itoa(i)), payBody(newOrderID(), 300, "pm_card_declined"))
		if r.status != 402 {
			t.Fatalf("declined card = %d %s; want 402", r.status, r.raw)
		}
	}
	if guard.State() != circuitbreaker.ClosedState || guard.Retries() != 0 {
		t.Errorf("breaker = %v, retries = %d; want closed, 0", guard.State(), guard.Retries())
	}
}

// lookupEnv is payment behind a breaker with a short delay in front of the
// real provider, whose charge look-ups by key (GET /v1/charges) it counts.
// An unknown intent is settled only after a minute, so every list of an
// order's payments looks its intent up again and answers payment_unsettled.
func lookupEnv(t *testing.T) (*provider.Simulator, *resilience.Downstream, string, *atomic.Int32) {
	t.Helper()
	p := resilience.DefaultPolicy(200 * time.Millisecond)
	p.FailureThreshold, p.Window = 3, 5
	p.Delay = 300 * time.Millisecond
	p.SuccessThreshold = 2
	p.Backoff, p.MaxBackoff = 10*time.Millisecond, 20*time.Millisecond
	guard := resilience.New("provider", p, nil, slog.New(slog.DiscardHandler))
	var lookups atomic.Int32
	count := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && r.URL.Path == "/v1/charges" {
				lookups.Add(1)
			}
			next.ServeHTTP(w, r)
		})
	}
	e := newEnv(t, guard, Config{SettleAfter: time.Minute}, count)
	e.sim.Update(provider.Patch{LatencyMS: ptr(5000)})
	return e.sim, guard, e.url, &lookups
}

// slowCharge sends a charge the slow provider times out: 504.
func slowCharge(t *testing.T, url, orderID string) {
	t.Helper()
	r := do(t, "POST", url+"/v1/payments", key("k-"+orderID), payBody(orderID, 300, "pm_card_ok"))
	if r.status != 504 || r.body["code"] != "provider_timeout" {
		t.Fatalf("POST to a slow provider = %d %s; want 504 provider_timeout", r.status, r.raw)
	}
}

// listUnsettled lists an order whose charge timed out: 503 payment_unsettled.
func listUnsettled(t *testing.T, url, orderID string) {
	t.Helper()
	r := do(t, "GET", url+"/v1/payments?order_id="+orderID, nil, "")
	if r.status != 503 || r.body["code"] != "payment_unsettled" {
		t.Fatalf("list of an order with an unknown charge = %d %s; want 503 payment_unsettled", r.status, r.raw)
	}
}

// A provider whose charges time out while its look-ups by key answer at
// once (a slow card network, a fast ledger) is failing: the look-ups that
// payment makes to settle the timed-out charges must not close the
// breaker the charges opened (fault 2 of the fault suite: it closed every
// few seconds, and CircuitBreakerOpen never fired), and are still sent
// once the breaker's delay is over.
func TestProviderBreaker_LookupsNeverCloseItForSlowCharges(t *testing.T) {
	t.Parallel()
	_, guard, url, lookups := lookupEnv(t)
	orders := []string{newOrderID(), newOrderID(), newOrderID()}
	for _, id := range orders {
		slowCharge(t, url, id)
	}
	if guard.State() != circuitbreaker.OpenState {
		t.Fatalf("breaker = %v after 3 timed-out charges; want open", guard.State())
	}

	// Within the delay a look-up fails fast, as a charge does.
	start := time.Now()
	listUnsettled(t, url, orders[0])
	if d := time.Since(start); d > 150*time.Millisecond || lookups.Load() != 0 {
		t.Errorf("list with the breaker open took %v with %d look-ups sent; want < 150ms, none", d, lookups.Load())
	}

	// After it, look-ups reach the provider and answer at once, but do not
	// close the breaker: two good probes would.
	time.Sleep(guard.Policy().Delay + 50*time.Millisecond)
	for range 3 {
		listUnsettled(t, url, orders[0])
	}
	if lookups.Load() != 3 {
		t.Errorf("look-ups sent past the delay = %d; want 3", lookups.Load())
	}
	if guard.State() == circuitbreaker.ClosedState {
		t.Fatalf("breaker closed by look-ups while every charge times out")
	}
	// The next charge is the probe; it times out and the breaker opens.
	slowCharge(t, url, newOrderID())
	if guard.State() != circuitbreaker.OpenState {
		t.Errorf("breaker = %v after a timed-out probe; want open", guard.State())
	}
}

// The look-ups that follow timed-out charges, more of them than charges
// (the reconciler and every compensation asking again), must not outvote
// the charges in the breaker's window.
func TestProviderBreaker_LookupsDoNotOutvoteSlowCharges(t *testing.T) {
	t.Parallel()
	_, guard, url, lookups := lookupEnv(t)
	for range 3 {
		id := newOrderID()
		slowCharge(t, url, id)
		listUnsettled(t, url, id)
		listUnsettled(t, url, id)
	}
	// Two after each of the first two charges; the third opened the
	// breaker, which rejects the last two.
	if lookups.Load() != 4 {
		t.Errorf("look-ups sent = %d; want 4", lookups.Load())
	}
	if guard.State() != circuitbreaker.OpenState {
		t.Fatalf("breaker = %v after 3 timed-out charges among 4 good look-ups; want open", guard.State())
	}
	r := do(t, "POST", url+"/v1/payments", key("k-fast"), payBody(newOrderID(), 300, "pm_card_ok"))
	if r.status != 503 || r.body["code"] != "provider_unavailable" {
		t.Errorf("POST with the breaker open = %d %s; want 503 provider_unavailable", r.status, r.raw)
	}
}
