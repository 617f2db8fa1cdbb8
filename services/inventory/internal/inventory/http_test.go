package inventory

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/pkg/auth"
	"github.com/orderflow/orderflow/pkg/authtest"
	"github.com/orderflow/orderflow/pkg/web"
)

const (
	testAdminToken = "s3cret"
	testSagaToken  = "saga"
	testCustomer   = "customer"
)

// testAuthn authenticates the two test tokens: the admin's and the order
// service's (scope inventory.reservations).
var testAuthn = authtest.Tokens(map[string]auth.Principal{
	testAdminToken: {Subject: "orderflow-admin", Scopes: []string{auth.ScopeAdmin}},
	testSagaToken:  {Subject: "orderflow-order", Scopes: []string{auth.ScopeReservations, auth.ScopePayments}},
	testCustomer:   {Subject: "cus_1", Scopes: []string{auth.ScopeOrders}},
})

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestHandler(t *testing.T) (http.Handler, *pgxpool.Pool) {
	t.Helper()
	pool := newTestPool(t)
	return NewHandler(discardLogger(), NewService(NewStore(pool), nil, testTTL), nil, testAuthn, nil), pool
}

type call struct {
	method, path, body string
	header             map[string]string
}

// do sends c to h and returns the status and the decoded JSON body.
func do(t *testing.T, h http.Handler, c call) (int, map[string]any, http.Header) {
	t.Helper()
	req := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
	if c.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if strings.HasPrefix(c.path, "/v1/reservations") {
		req.Header.Set("Authorization", "Bearer "+testSagaToken) // the saga's routes: the order service calls
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("%s %s: body %q is not a JSON object: %v", c.method, c.path, rec.Body.String(), err)
	}
	return rec.Code, body, rec.Header()
}

func admin() map[string]string { return map[string]string{"Authorization": "Bearer " + testAdminToken} }

func TestHandler_Errors(t *testing.T) {
	t.Parallel()
	h, pool := newTestHandler(t)
	addProducts(t, pool, map[string]int{"A": 5, "B": 1, "C": 0})

	released := uuid.Must(uuid.NewV7()).String()
	if code, _, _ := do(t, h, call{method: "POST", path: "/v1/reservations/" + released + "/release"}); code != 200 {
		t.Fatalf("release tombstone = %d; want 200", code)
	}
	newID := func() string { return uuid.Must(uuid.NewV7()).String() }
	manyItems := make([]string, 51)
	for i := range manyItems {
		manyItems[i] = fmt.Sprintf(`{"sku":"S%d","quantity":1}`, i)
	}

	tests := []struct {
		name       string
		call       call
		wantStatus int
		wantCode   string
		wantErrors []string // keys of the "errors" member
		wantSKUs   []any
	}{
		{name: "unknown product", call: call{method: "GET", path: "/v1/products/NOPE"}, wantStatus: 404, wantCode: "not_found"},
		{name: "NUL sku", call: call{method: "GET", path: "/v1/products/A%00"}, wantStatus: 404, wantCode: "not_found"},
		{name: "limit zero", call: call{method: "GET", path: "/v1/products?limit=0"}, wantStatus: 400, wantCode: "validation_failed", wantErrors: []string{"limit"}},
		{name: "limit too big", call: call{method: "GET", path: "/v1/products?limit=101"}, wantStatus: 400, wantCode: "validation_failed", wantErrors: []string{"limit"}},
		{name: "limit not a number", call: call{method: "GET", path: "/v1/products?limit=ten"}, wantStatus: 400, wantCode: "validation_failed", wantErrors: []string{"limit"}},
		{name: "cursor not base64", call: call{method: "GET", path: "/v1/products?cursor=%21%21"}, wantStatus: 400, wantCode: "bad_cursor"},
		{name: "cursor not ours", call: call{method: "GET", path: "/v1/products?cursor=" + base64.RawURLEncoding.EncodeToString([]byte("A"))}, wantStatus: 400, wantCode: "bad_cursor"},
		{name: "cursor with NUL", call: call{method: "GET", path: "/v1/products?cursor=" + base64.RawURLEncoding.EncodeToString([]byte("sku:\x00"))}, wantStatus: 400, wantCode: "bad_cursor"},

		{name: "stock without token", call: call{method: "PUT", path: "/v1/products/A/stock", body: `{"available":99}`}, wantStatus: 401, wantCode: "unauthorized"},
		{name: "stock with the saga's token", call: call{method: "PUT", path: "/v1/products/A/stock", body: `{"available":99}`, header: map[string]string{"Authorization": "Bearer " + testSagaToken}}, wantStatus: 403, wantCode: "insufficient_scope"},
		{name: "stock with a customer token", call: call{method: "PUT", path: "/v1/products/A/stock", body: `{"available":99}`, header: map[string]string{"Authorization": "Bearer " + testCustomer}}, wantStatus: 403, wantCode: "insufficient_scope"},
		{name: "release with a customer token", call: call{method: "POST", path: "/v1/reservations/" + uuid.NewString() + "/release", header: map[string]string{"Authorization": "Bearer " + testCustomer}}, wantStatus: 403, wantCode: "insufficient_scope"},
		{name: "reserve without a token", call: call{method: "POST", path: "/v1/reservations", body: `{}`, header: map[string]string{"Authorization": ""}}, wantStatus: 401, wantCode: "unauthorized"},
		{name: "stock with wrong token", call: call{method: "PUT", path: "/v1/products/A/stock", body: `{"available":99}`, header: map[string]string{"Authorization": "Bearer nope"}}, wantStatus: 401, wantCode: "unauthorized"},
		{name: "stock negative", call: call{method: "PUT", path: "/v1/products/A/stock", body: `{"available":-1}`, header: admin()}, wantStatus: 400, wantCode: "validation_failed", wantErrors: []string{"available"}},
		{name: "stock too big", call: call{method: "PUT", path: "/v1/products/A/stock", body: `{"available":1000000001}`, header: admin()}, wantStatus: 400, wantCode: "validation_failed", wantErrors: []string{"available"}},
		{name: "stock fraction", call: call{method: "PUT", path: "/v1/products/A/stock", body: `{"available":1.5}`, header: admin()}, wantStatus: 400, wantCode: "validation_failed", wantErrors: []string{"available"}},
		{name: "stock string", call: call{method: "PUT", path: "/v1/products/A/stock", body: `{"available":"7"}`, header: admin()}, wantStatus: 400, wantCode: "validation_failed", wantErrors: []string{"available"}},
		{name: "stock missing", call: call{method: "PUT", path: "/v1/products/A/stock", body: `{}`, header: admin()}, wantStatus: 400, wantCode: "validation_failed", wantErrors: []string{"available"}},
		{name: "stock null", call: call{method: "PUT", path: "/v1/products/A/stock", body: `{"available":null}`, header: admin()}, wantStatus: 400, wantCode: "validation_failed", wantErrors: []string{"available"}},
		{name: "stock unknown field", call: call{method: "PUT", path: "/v1/products/A/stock", body: `{"available":1,"x":1}`, header: admin()}, wantStatus: 400, wantCode: "unknown_field", wantErrors: []string{"x"}},
		{name: "stock bad json", call: call{method: "PUT", path: "/v1/products/A/stock", body: `{"available":`, header: admin()}, wantStatus: 400, wantCode: "bad_json"},
		{name: "stock wrong media type", call: call{method: "PUT", path: "/v1/products/A/stock", body: `{"available":1}`, header: map[string]string{"Authorization": "Bearer " + testAdminToken, "Content-Type": "text/plain"}}, wantStatus: 415, wantCode: "unsupported_media_type"},
		{name: "stock body too large", call: call{method: "PUT", path: "/v1/products/A/stock", body: `{"available":1` + strings.Repeat(" ", 70<<10) + `}`, header: admin()}, wantStatus: 413, wantCode: "body_too_large"},
		{name: "stock unknown sku", call: call{method: "PUT", path: "/v1/products/NOPE/stock", body: `{"available":1}`, header: admin()}, wantStatus: 404, wantCode: "not_found"},

		{name: "reserve bad json", call: call{method: "POST", path: "/v1/reservations", body: `{"order_id":`}, wantStatus: 400, wantCode: "bad_json"},
		{name: "reserve empty body", call: call{method: "POST", path: "/v1/reservations", body: ``}, wantStatus: 400, wantCode: "bad_json"},
		{name: "reserve unknown field", call: call{method: "POST", path: "/v1/reservations", body: `{"order_id":"` + newID() + `","items":[{"sku":"A","quantity":1}],"x":1}`}, wantStatus: 400, wantCode: "unknown_field"},
		{name: "reserve bad order id", call: call{method: "POST", path: "/v1/reservations", body: `{"order_id":"o-1","items":[{"sku":"A","quantity":1}]}`}, wantStatus: 400, wantCode: "validation_failed", wantErrors: []string{"order_id"}},
		{name: "reserve missing order id", call: call{method: "POST", path: "/v1/reservations", body: `{"items":[{"sku":"A","quantity":1}]}`}, wantStatus: 400, wantCode: "validation_failed", wantErrors: []string{"order_id"}},
		{name: "reserve no items", call: call{method: "POST", path: "/v1/reservations", body: `{"order_id":"` + newID() + `","items":[]}`}, wantStatus: 400, wantCode: "validation_failed", wantErrors: []string{"items"}},
		{name: "reserve too many items", call: call{method: "POST", path: "/v1/reservations", body: `{"order_id":"` + newID() + `","items":[` + strings.Join(manyItems, ",") + `]}`}, wantStatus: 400, wantCode: "validation_failed", wantErrors: []string{"items"}},
		{name: "reserve quantity zero", call: call{method: "POST", path: "/v1/reservations", body: `{"order_id":"` + newID() + `","items":[{"sku":"A","quantity":0}]}`}, wantStatus: 400, wantCode: "validation_failed", wantErrors: []string{"items[0].quantity"}},
		{name: "reserve quantity too big", call: call{method: "POST", path: "/v1/reservations", body: `{"order_id":"` + newID() + `","items":[{"sku":"A","quantity":1001}]}`}, wantStatus: 400, wantCode: "validation_failed", wantErrors: []string{"items[0].quantity"}},
		{name: "reserve quantity fraction", call: call{method: "POST", path: "/v1/reservations", body: `{"order_id":"` + newID() + `","items":[{"sku":"A","quantity":1.5}]}`}, wantStatus: 400, wantCode: "validation_failed"},
		{name: "reserve duplicate sku", call: call{method: "POST", path: "/v1/reservations", body: `{"order_id":"` + newID() + `","items":[{"sku":"A","quantity":1},{"sku":"A","quantity":2}]}`}, wantStatus: 400, wantCode: "validation_failed", wantErrors: []string{"items[1].sku"}},
		{name: "reserve missing sku", call: call{method: "POST", path: "/v1/reservations", body: `{"order_id":"` + newID() + `","items":[{"quantity":2}]}`}, wantStatus: 400, wantCode: "validation_failed", wantErrors: []string{"items[0].sku"}},
		{name: "reserve unknown skus", call: call{method: "POST", path: "/v1/reservations", body: `{"order_id":"` + newID() + `","items":[{"sku":"A","quantity":1},{"sku":"Z","quantity":1},{"sku":"X","quantity":1}]}`}, wantStatus: 409, wantCode: "unknown_sku", wantSKUs: []any{"X", "Z"}},
		{name: "reserve out of stock", call: call{method: "POST", path: "/v1/reservations", body: `{"order_id":"` + newID() + `","items":[{"sku":"C","quantity":1},{"sku":"A","quantity":1},{"sku":"B","quantity":2}]}`}, wantStatus: 409, wantCode: "out_of_stock", wantSKUs: []any{"B", "C"}},
		{name: "reserve after tombstone", call: call{method: "POST", path: "/v1/reservations", body: `{"order_id":"` + released + `","items":[{"sku":"A","quantity":1}]}`}, wantStatus: 200},

		{name: "get unknown reservation", call: call{method: "GET", path: "/v1/reservations/" + newID()}, wantStatus: 404, wantCode: "not_found"},
		{name: "get malformed reservation", call: call{method: "GET", path: "/v1/reservations/nope"}, wantStatus: 400, wantCode: "validation_failed", wantErrors: []string{"order_id"}},
		{name: "commit unknown", call: call{method: "POST", path: "/v1/reservations/" + newID() + "/commit"}, wantStatus: 404, wantCode: "not_found"},
		{name: "commit malformed", call: call{method: "POST", path: "/v1/reservations/123/commit"}, wantStatus: 400, wantCode: "validation_failed", wantErrors: []string{"order_id"}},
		{name: "commit released", call: call{method: "POST", path: "/v1/reservations/" + released + "/commit"}, wantStatus: 409, wantCode: "reservation_not_active"},
		{name: "release malformed", call: call{method: "POST", path: "/v1/reservations/not-a-uuid/release"}, wantStatus: 400, wantCode: "validation_failed", wantErrors: []string{"order_id"}},
		{name: "unknown route", call: call{method: "GET", path: "/v1/nope"}, wantStatus: 404, wantCode: "not_found"},
		{name: "wrong method", call: call{method: "DELETE", path: "/v1/products/A"}, wantStatus: 405, wantCode: "method_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, header := do(t, h, tt.call)
			if status != tt.wantStatus {
				t.Fatalf("status = %d; want %d (body %v)", status, tt.wantStatus, body)
			}
			if tt.wantCode == "" {
				return
			}
			if ct := header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type = %q; want application/problem+json", ct)
			}
			if body["code"] != tt.wantCode || body["status"] != float64(tt.wantStatus) || body["type"] == "" || body["title"] == "" {
				t.Errorf("problem = %v; want code %q and status %d", body, tt.wantCode, tt.wantStatus)
			}
			for _, k := range tt.wantErrors {
				errs, _ := body["errors"].(map[string]any)
				if _, ok := errs[k]; !ok {
					t.Errorf("errors = %v; want a problem for %q", body["errors"], k)
				}
			}
			if tt.wantSKUs != nil {
				if diff := cmp.Diff(tt.wantSKUs, body["skus"]); diff != "" {
					t.Errorf("skus (-want +got):\n%s", diff)
				}
			}
		})
	}

	// None of the rejected calls changed anything.
	if diff := cmp.Diff(map[string]int{"A": 5, "B": 1, "C": 0}, stockOf(t, pool, "A", "B", "C")); diff != "" {
		t.Errorf("stock after rejected calls (-want +got):\n%s", diff)
	}
	if n := countReservations(t, pool); n != 1 {
		t.Errorf("reservations = %d; want only the tombstone", n)
	}
}

func TestHandler_ProductAndStock(t *testing.T) {
	t.Parallel()
	h, pool := newTestHandler(t)
	addProducts(t, pool, map[string]int{"A": 5})

	want := map[string]any{"sku": "A", "name": "Name A", "price_cents": float64(priceOf("A")), "currency": "USD", "available": float64(5)}
	status, body, _ := do(t, h, call{method: "GET", path: "/v1/products/A"})
	if status != 200 {
		t.Fatalf("GET product = %d; want 200", status)
	}
	if diff := cmp.Diff(want, body); diff != "" {
		t.Errorf("GET product (-want +got):\n%s", diff)
	}

	for _, n := range []int{0, 1_000_000_000, 42} {
		status, body, _ = do(t, h, call{method: "PUT", path: "/v1/products/A/stock", body: fmt.Sprintf(`{"available":%d}`, n), header: admin()})
		want["available"] = float64(n)
		if status != 200 {
			t.Fatalf("PUT stock %d = %d %v; want 200", n, status, body)
		}
		if diff := cmp.Diff(want, body); diff != "" {
			t.Errorf("PUT stock %d (-want +got):\n%s", n, diff)
		}
	}
	if got := available(t, pool, "A"); got != 42 {
		t.Errorf("available = %d; want 42", got)
	}
}

func TestHandler_Reservations(t *testing.T) {
	t.Parallel()
	h, pool := newTestHandler(t)
	addProducts(t, pool, map[string]int{"A": 5, "B": 5})
	id := uuid.Must(uuid.NewV7()).String()
	body := `{"order_id":"` + id + `","items":[{"sku":"B","quantity":2},{"sku":"A","quantity":1}]}`
	reservationPath := "/v1/reservations/" + id

	status, first, header := do(t, h, call{method: "POST", path: "/v1/reservations", body: body})
	if status != 201 || header.Get("Location") != reservationPath {
		t.Fatalf("reserve = %d (Location %q) %v; want 201 with Location", status, header.Get("Location"), first)
	}
	wantItems := []any{
		map[string]any{"sku": "A", "quantity": float64(1), "unit_price_cents": float64(priceOf("A"))},
		map[string]any{"sku": "B", "quantity": float64(2), "unit_price_cents": float64(priceOf("B"))},
	}
	if first["order_id"] != id || first["status"] != "reserved" || first["expires_at"] == nil {
		t.Errorf("reserve body = %v", first)
	}
	if diff := cmp.Diff(wantItems, first["items"]); diff != "" {
		t.Errorf("items (-want +got):\n%s", diff)
	}

	status, again, _ := do(t, h, call{method: "POST", path: "/v1/reservations", body: body})
	if status != 200 {
		t.Fatalf("repeat reserve = %d; want 200", status)
	}
	if diff := cmp.Diff(first, again); diff != "" {
		t.Errorf("repeat reserve (-first +repeat):\n%s", diff)
	}
	status, got, _ := do(t, h, call{method: "GET", path: reservationPath})
	if status != 200 {
		t.Fatalf("GET reservation = %d; want 200", status)
	}
	if diff := cmp.Diff(first, got); diff != "" {
		t.Errorf("GET reservation (-reserve +get):\n%s", diff)
	}

	steps := []struct {
		path, wantStatus string
		wantStock        map[string]int
	}{
		{"/commit", "committed", map[string]int{"A": 4, "B": 3}},
		{"/commit", "committed", map[string]int{"A": 4, "B": 3}},
		{"/release", "released", map[string]int{"A": 5, "B": 5}},
		{"/release", "released", map[string]int{"A": 5, "B": 5}},
	}
	for _, s := range steps {
		status, body, _ := do(t, h, call{method: "POST", path: reservationPath + s.path})
		if status != 200 || body["status"] != s.wantStatus {
			t.Fatalf("POST %s = %d %v; want 200 %s", s.path, status, body, s.wantStatus)
		}
		if diff := cmp.Diff(s.wantStock, stockOf(t, pool, "A", "B")); diff != "" {
			t.Errorf("stock after %s (-want +got):\n%s", s.path, diff)
		}
	}

	tomb := uuid.Must(uuid.NewV7()).String()
	status, body2, _ := do(t, h, call{method: "POST", path: "/v1/reservations/" + tomb + "/release"})
	if status != 200 || body2["status"] != "released" || len(body2["items"].([]any)) != 0 {
		t.Errorf("release unknown = %d %v; want 200 released with no items", status, body2)
	}
}

func TestHandler_Pagination(t *testing.T) {
	t.Parallel()
	h, pool := newTestHandler(t)
	if _, err := NewStore(pool).Seed(context.Background(), 45); err != nil {
		t.Fatalf("Seed: %v", err)
	}
	tests := []struct {
		limit     string
		wantPages int
	}{
		{"10", 5},
		{"15", 3}, // an exact multiple: the third page must not offer a cursor
		{"100", 1},
		{"", 3}, // default 20
	}
	for _, tt := range tests {
		t.Run("limit="+tt.limit, func(t *testing.T) {
			var skus []string
			cursor, pages := "", 0
			for {
				path := "/v1/products?limit=" + tt.limit + "&cursor=" + cursor
				status, body, _ := do(t, h, call{method: "GET", path: path})
				if status != 200 {
					t.Fatalf("GET %s = %d %v", path, status, body)
				}
				pages++
				products := body["products"].([]any)
				if len(products) == 0 {
					t.Fatalf("page %d is empty", pages)
				}
				for _, p := range products {
					skus = append(skus, p.(map[string]any)["sku"].(string))
				}
				next, _ := body["next_cursor"].(string)
				if next == "" {
					break
				}
				if pages > 50 {
					t.Fatal("pagination does not end")
				}
				cursor = next
			}
			if pages != tt.wantPages {
				t.Errorf("pages = %d; want %d", pages, tt.wantPages)
			}
			want := make([]string, 45)
			for i := range want {
				want[i] = fmt.Sprintf("SKU-%05d", i+1)
			}
			if diff := cmp.Diff(want, skus); diff != "" {
				t.Errorf("skus walked (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHandler_Probes(t *testing.T) {
	t.Parallel()
	h, _ := newTestHandler(t)
	for _, path := range []string{"/healthz", "/readyz"} {
		if status, body, _ := do(t, h, call{method: "GET", path: path}); status != 200 {
			t.Errorf("GET %s = %d %v; want 200", path, status, body)
		}
	}
}

func FuzzDecodeReservation(f *testing.F) {
	id := "0190b2a0-7e3c-7000-8000-000000000001"
	f.Add([]byte(`{"order_id":"` + id + `","items":[{"sku":"A","quantity":1}]}`))
	f.Add([]byte(`{"order_id":"` + id + `","items":[{"sku":"A","quantity":1},{"sku":"A","quantity":1}]}`))
	f.Add([]byte(`{"order_id":"` + id + `","items":[{"sku":"A","quantity":1001}]}`))
	f.Add([]byte(`{"order_id":"x","items":[]}`))
	f.Add([]byte(`{"items":[{"sku":"\u0000","quantity":-1}],"extra":true}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"order_id":"` + id + `"} {}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		orderID, items, err := decodeReservation(body)
		if err != nil {
			var p *web.Problem
			if !errors.As(err, &p) || p.Status != http.StatusBadRequest || p.Code == "" {
				t.Fatalf("error %#v is not a 400 problem", err)
			}
			if orderID != uuid.Nil || items != nil {
				t.Fatalf("error %v came with a result", err)
			}
			return
		}
		if orderID == uuid.Nil && !strings.Contains(string(body), uuid.Nil.String()) {
			t.Fatalf("valid request with a nil order id: %q", body)
		}
		if len(items) < 1 || len(items) > MaxItems {
			t.Fatalf("valid request with %d items", len(items))
		}
		seen := map[string]bool{}
		for _, it := range items {
			if !validSKU(it.SKU) || seen[it.SKU] || it.Quantity < 1 || it.Quantity > MaxQuantity {
				t.Fatalf("valid request with bad item %+v", it)
			}
			seen[it.SKU] = true
		}
	})
}
