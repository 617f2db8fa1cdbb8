package inventory

import (
	"net/netip"
	"testing"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/pkg/web"
	"github.com/orderflow/orderflow/pkg/web/webtest"
)

// TestHostile drives every route of NewHandler, with the Redis cache on,
// with generated hostile values, mostly behind a token the route accepts
// so they reach the use cases, the cache and the database: no answer may
// be a 5xx, every 4xx is a problem. HOSTILE_SEED repeats a run, HOSTILE_N
// sets the requests per route.
func TestHostile(t *testing.T) {
	t.Parallel()
	env := newCachedEnv(t, map[string]int{"SKU-00001": 1000000, "SKU-00002": 1000000, "SKU-00003": 5})
	_, body, _ := do(t, env.h, call{method: "GET", path: "/v1/products?limit=1"})
	cursor, _ := body["next_cursor"].(string)
	if cursor == "" {
		t.Fatalf("list = %v; want a next_cursor", body)
	}
	orderID := uuid.Must(uuid.NewV7()).String()
	if code, body, _ := do(t, env.h, call{method: "POST", path: "/v1/reservations",
		body: `{"order_id":"` + orderID + `","items":[{"sku":"SKU-00001","quantity":1}]}`}); code != 201 {
		t.Fatalf("reserve = %d %v", code, body)
	}

	saga := []string{testSagaToken}
	webtest.Run(t, env.h, webtest.Config{
		Tokens: []string{testAdminToken, testSagaToken, testCustomer},
		Wrap:   web.ClientAddr([]netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}),
		Routes: []webtest.Route{
			{Method: "GET", Pattern: "/healthz"},
			{Method: "GET", Pattern: "/readyz"},
			{Method: "GET", Pattern: "/v1/products", Query: map[string]string{"limit": "2", "cursor": cursor},
				Header: map[string]string{"Accept-Encoding": "gzip", "If-None-Match": `"0"`}},
			{Method: "GET", Pattern: "/v1/products/{sku}", Params: map[string]string{"sku": "SKU-00002"},
				Header: map[string]string{"If-None-Match": `"0"`}},
			{Method: "PUT", Pattern: "/v1/products/{sku}/stock", Tokens: []string{testAdminToken},
				Params: map[string]string{"sku": "SKU-00003"}, Body: `{"available":7}`},
			{Method: "POST", Pattern: "/v1/reservations", Tokens: saga,
				Body: `{"order_id":"$uuid","items":[{"sku":"SKU-00001","quantity":1},{"sku":"SKU-00002","quantity":2}]}`},
			{Method: "GET", Pattern: "/v1/reservations/{order_id}", Tokens: saga, Params: map[string]string{"order_id": orderID}},
			{Method: "POST", Pattern: "/v1/reservations/{order_id}/commit", Tokens: saga, Params: map[string]string{"order_id": orderID}},
			{Method: "POST", Pattern: "/v1/reservations/{order_id}/release", Tokens: saga, Params: map[string]string{"order_id": "$uuid"}},
		},
	})
}
