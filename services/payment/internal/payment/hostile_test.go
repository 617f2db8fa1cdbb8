package payment

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/orderflow/orderflow/pkg/web"
	"github.com/orderflow/orderflow/pkg/web/webtest"
	"github.com/orderflow/orderflow/services/payment/internal/provider"
)

// TestHostile drives every route of NewHandler with generated hostile
// values, mostly behind a token the route accepts so they reach the use
// cases, the database and the provider: no answer may be a 5xx, every 4xx
// is a problem. A hostile but valid PUT /admin/provider (an outage, a
// latency) is undone after each request, so it cannot turn the requests
// after it into honest 503s. HOSTILE_SEED repeats a run, HOSTILE_N sets the
// requests per route.
func TestHostile(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, 2*time.Second)
	orderID := newOrderID()
	created := do(t, "POST", e.url+"/v1/payments", key("k-hostile"), payBody(orderID, 4200, "pm_card_ok"))
	id, _ := created.body["id"].(string)
	if created.status != 201 || id == "" {
		t.Fatalf("create = %d %s", created.status, created.raw)
	}
	calm := provider.Patch{LatencyMS: new(int), ErrorRate: new(float64), Outage: new(bool)}

	h := NewHandler(slog.New(slog.DiscardHandler), e.svc, map[string]web.Check{"postgres": e.pool.Ping}, nil, testAuthn)
	order, admin := []string{orderToken}, []string{testToken}
	webtest.Run(t, h, webtest.Config{
		Tokens: []string{testToken, orderToken, "customer"},
		Wrap:   web.ClientAddr([]netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}),
		After:  func() { e.sim.Update(calm) },
		Routes: []webtest.Route{
			{Method: "GET", Pattern: "/healthz"},
			{Method: "GET", Pattern: "/readyz"},
			{Method: "POST", Pattern: "/v1/payments", Tokens: order,
				Header: map[string]string{"Idempotency-Key": "$unique"},
				Body:   `{"order_id":"$uuid","amount_cents":4200,"currency":"USD","method":"pm_card_ok"}`},
			{Method: "POST", Pattern: "/v1/payments/{id}/refund", Tokens: order, Params: map[string]string{"id": id}},
			{Method: "GET", Pattern: "/v1/payments", Tokens: []string{orderToken, testToken},
				Query: map[string]string{"order_id": orderID}},
			{Method: "GET", Pattern: "/v1/payments/{id}", Tokens: []string{orderToken, testToken},
				Params: map[string]string{"id": id}},
			{Method: "GET", Pattern: "/admin/provider", Tokens: admin},
			{Method: "PUT", Pattern: "/admin/provider", Tokens: admin,
				Body: `{"latency_ms":0,"error_rate":0.0,"outage":false}`},
		},
	})
}
