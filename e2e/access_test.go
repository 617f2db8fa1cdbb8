package e2e

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestAccess runs the refusals of the brief's "Identity and access" against
// the real processes and a real Hydra: nobody without the right token
// changes anything, and no customer sees another's data.
func TestAccess(t *testing.T) {
	s := startStack(t)
	r := s.placeOrder(orderBody("cus_alice", "SKU-00011", 2, "pm_card_ok"), newKey())
	if r.status != http.StatusCreated || r.body["status"] != "confirmed" {
		t.Fatalf("alice's order = %d %s", r.status, r.raw)
	}
	orderID, paymentID := r.body["id"].(string), r.body["payment_id"].(string)
	s.waitNotifications(t, orderID, 1, "order_confirmed")
	stock := s.available("SKU-00011")
	none := []string{"Authorization", ""}
	forged := []string{"Authorization", "Bearer " + algNone(t, token(t, "cus_alice"))}

	refusals := []struct {
		name, method, service, path string
		header                      []string
		want                        int
		code                        string
	}{
		// The two curls of the issue: refund a payment, release committed stock.
		{"refund without a token", "POST", "payment", "/v1/payments/" + paymentID + "/refund", none, 401, "unauthorized"},
		{"release without a token", "POST", "inventory", "/v1/reservations/" + orderID + "/release", none, 401, "unauthorized"},
		{"refund with a forged token", "POST", "payment", "/v1/payments/" + paymentID + "/refund", forged, 401, "unauthorized"},
		{"refund with the customer's token", "POST", "payment", "/v1/payments/" + paymentID + "/refund", s.as("cus_alice"), 403, "insufficient_scope"},
		{"release with the customer's token", "POST", "inventory", "/v1/reservations/" + orderID + "/release", s.as("cus_alice"), 403, "insufficient_scope"},
		{"release with an admin token", "POST", "inventory", "/v1/reservations/" + orderID + "/release", s.admin(), 403, "insufficient_scope"},
		{"stock with the customer's token", "PUT", "inventory", "/v1/products/SKU-00011/stock", s.as("cus_alice"), 403, "insufficient_scope"},
		{"provider outage with the customer's token", "PUT", "payment", "/admin/provider", s.as("cus_alice"), 403, "insufficient_scope"},
		// Another customer.
		{"another's order", "GET", "order", "/v1/orders/" + orderID, s.as("cus_bob"), 404, "not_found"},
		{"another's cancel", "POST", "order", "/v1/orders/" + orderID + "/cancel", s.as("cus_bob"), 404, "not_found"},
		{"another's list", "GET", "order", "/v1/orders?customer_id=cus_alice", s.as("cus_bob"), 403, "customer_mismatch"},
		{"another's invoices", "GET", "notification", "/v1/invoices?order_id=" + orderID, s.as("cus_bob"), 404, "not_found"},
		{"another's e-mails", "GET", "notification", "/v1/emails?order_id=" + orderID, s.as("cus_bob"), 404, "not_found"},
		{"orders without a token", "GET", "order", "/v1/orders", none, 401, "unauthorized"},
		{"cancel with a forged token", "POST", "order", "/v1/orders/" + orderID + "/cancel", forged, 401, "unauthorized"},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			var body any
			if tc.method == "PUT" {
				body = map[string]any{"available": 0, "outage": true}
				if tc.service == "inventory" {
					body = map[string]any{"available": 0}
				}
			}
			r := s.do(tc.method, tc.service, tc.path, body, tc.header...)
			if r.status != tc.want || r.body["code"] != tc.code {
				t.Fatalf("%s %s = %d %s; want %d %s", tc.method, tc.path, r.status, r.raw, tc.want, tc.code)
			}
			if tc.want == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate = %q; want a Bearer challenge", r.header.Get("WWW-Authenticate"))
			}
			if tc.want == 404 && strings.Contains(string(r.raw), "cus_alice") {
				t.Errorf("the 404 tells alice's data: %s", r.raw)
			}
		})
	}
	t.Run("a body naming another customer", func(t *testing.T) {
		body := orderBody("cus_bob", "SKU-00011", 1, "pm_card_ok")
		r := s.do(http.MethodPost, "order", "/v1/orders", body, append(s.as("cus_alice"), "Idempotency-Key", newKey())...)
		if r.status != http.StatusForbidden || r.body["code"] != "customer_mismatch" {
			t.Fatalf("order for bob with alice's token = %d %s; want 403 customer_mismatch", r.status, r.raw)
		}
		if r := s.do(http.MethodGet, "order", "/v1/orders?customer_id=cus_bob", nil); len(r.body["orders"].([]any)) != 0 {
			t.Errorf("bob has orders after the refusal: %s", r.raw)
		}
	})

	// Nothing changed: the order is confirmed, its payment captured, the
	// stock where it was; alice still sees her own.
	time.Sleep(200 * time.Millisecond)
	if r := s.do(http.MethodGet, "order", "/v1/orders/"+orderID, nil, s.as("cus_alice")...); r.status != 200 || r.body["status"] != "confirmed" {
		t.Errorf("alice's order after the refusals = %d %s; want 200 confirmed", r.status, r.raw)
	}
	if r := s.do(http.MethodGet, "payment", "/v1/payments/"+paymentID, nil); r.body["status"] != "captured" {
		t.Errorf("payment after the refusals = %s; want captured", r.raw)
	}
	if got := s.available("SKU-00011"); got != stock {
		t.Errorf("stock after the refusals = %d; want %d", got, stock)
	}
	if r := s.do(http.MethodGet, "notification", "/v1/invoices?order_id="+orderID, nil, s.as("cus_alice")...); r.status != 200 {
		t.Errorf("alice's invoices = %d %s; want 200", r.status, r.raw)
	}
}

// algNone rewrites a real token with "alg":"none" and no signature.
func algNone(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	return base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
}
