package order

import (
	"net/netip"
	"testing"

	"github.com/orderflow/orderflow/pkg/auth"
	"github.com/orderflow/orderflow/pkg/authtest"
	"github.com/orderflow/orderflow/pkg/web"
	"github.com/orderflow/orderflow/pkg/web/webtest"
)

// TestHostile drives every route of NewHandler with generated hostile
// values, mostly behind a token the route accepts so they reach the use
// cases and the database: no answer may be a 5xx, every 4xx is a problem.
// HOSTILE_SEED repeats a run, HOSTILE_N sets the requests per route.
func TestHostile(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	id := h.confirmed(t, "k-hostile").ID
	h.confirmed(t, "k-hostile-2")
	page := h.do(t, "GET", "/v1/orders?limit=1")
	cursor, _ := decodeMap(t, page)["next_cursor"].(string)
	if cursor == "" {
		t.Fatalf("list = %d %s; want a next_cursor", page.Code, page.Body)
	}

	tokens := map[string]auth.Principal{
		"cus1":    customerCus1,
		"cus2":    customerCus2,
		"admin":   operator,
		"service": {Subject: "orderflow-order", ClientID: "orderflow-order", Scopes: []string{auth.ScopePayments, auth.ScopeReservations}},
	}
	routes := NewHandler(h.svc.log, h.svc, map[string]web.Check{"postgres": h.svc.store.Ping}, nil, authtest.Tokens(tokens), nil)
	customers := []string{"cus1", "cus2"}
	readers := []string{"cus1", "cus2", "admin"}
	webtest.Run(t, routes, webtest.Config{
		Tokens: []string{"cus1", "cus2", "admin", "service"},
		Wrap:   web.ClientAddr([]netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}),
		Routes: []webtest.Route{
			{Method: "GET", Pattern: "/healthz"},
			{Method: "GET", Pattern: "/readyz"},
			{Method: "POST", Pattern: "/v1/orders", Tokens: customers,
				Header: map[string]string{"Idempotency-Key": "$unique"},
				Body:   `{"customer_id":"cus_1","email":"a@example.com","items":[{"sku":"SKU-00001","quantity":2},{"sku":"SKU-2","quantity":1}],"payment_method":"pm_card_ok"}`},
			{Method: "POST", Pattern: "/v1/orders/{id}/cancel", Tokens: customers, Params: map[string]string{"id": id}},
			{Method: "GET", Pattern: "/v1/orders", Tokens: readers,
				Query: map[string]string{"customer_id": "cus_1", "limit": "1", "cursor": cursor}},
			{Method: "GET", Pattern: "/v1/orders/{id}", Tokens: readers, Params: map[string]string{"id": id},
				Header: map[string]string{"If-None-Match": `"x"`}},
			{Method: "GET", Pattern: "/admin/compensations", Tokens: []string{"admin"},
				Query: map[string]string{"limit": "10", "cursor": ""}},
			{Method: "POST", Pattern: "/admin/compensations/{order_id}/retry", Tokens: []string{"admin"},
				Params: map[string]string{"order_id": id}},
		},
	})
}
