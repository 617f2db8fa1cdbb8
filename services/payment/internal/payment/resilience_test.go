package payment

import (
	"log/slog"
	"strconv"
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
