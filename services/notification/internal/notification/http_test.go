package notification_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/pkg/auth"
	"github.com/orderflow/orderflow/pkg/authtest"
	"github.com/orderflow/orderflow/pkg/events"
	"github.com/orderflow/orderflow/pkg/smtptest"
	"github.com/orderflow/orderflow/pkg/web"
	"github.com/orderflow/orderflow/services/notification/internal/notification"
)

// testAuthn: an operator, the test events' customer (cus_1), another
// customer and the order service.
var testAuthn = authtest.Tokens(map[string]auth.Principal{
	"admin": {Subject: "orderflow-admin", Scopes: []string{auth.ScopeAdmin}},
	"owner": {Subject: "cus_1", Scopes: []string{auth.ScopeOrders}},
	"other": {Subject: "cus_2", Scopes: []string{auth.ScopeOrders}},
	"order": {Subject: "orderflow-order", Scopes: []string{auth.ScopePayments}},
})

// send sends method target as the caller with token ("" for none).
func send(h http.Handler, method, target, token string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// get sends GET target as the caller with token ("" for none).
func get(h http.Handler, target, token string) *httptest.ResponseRecorder {
	return send(h, http.MethodGet, target, token)
}

// decodeJSON decodes the body of rec into v.
func decodeJSON(t *testing.T, rec *httptest.ResponseRecorder, v any) {
	t.Helper()
	if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
		t.Fatalf("decode %s: %v", rec.Body, err)
	}
}

// newHandlerWithOrder returns the handler over a fresh service (and its
// pool) whose workers have made the invoice and e-mail of one confirmed
// order of cus_1, that order's event.
func newHandlerWithOrder(t *testing.T) (http.Handler, *notification.Service, *pgxpool.Pool, events.Order) {
	t.Helper()
	smtp := smtptest.Start(t)
	svc, pool := newService(t, smtp.Addr())
	h := notification.NewHandler(testLogger(t), svc, map[string]web.Check{"postgres": svc.Ready}, nil, testAuthn)
	e := newEvent(events.OrderConfirmed, "buyer@example.com")
	if err := svc.HandleInvoice(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if err := svc.HandleEmail(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	return h, svc, pool, e
}

func TestHandler_Lists(t *testing.T) {
	t.Parallel()
	h, _, pool, confirmed := newHandlerWithOrder(t)
	ctx := context.Background()
	// An e-mail row whose send has not completed must not be listed.
	unsent := newEvent(events.OrderCancelled, "buyer@example.com")
	unsent.OrderID = confirmed.OrderID
	if _, err := pool.Exec(ctx, `INSERT INTO emails (id, event_id, order_id, "to", subject, kind, body)
		VALUES ($1, $1, $2, 'buyer@example.com', 's', 'order_cancelled', 'b')`, unsent.ID, unsent.OrderID); err != nil {
		t.Fatal(err)
	}
	other := newEvent(events.OrderConfirmed, "")

	tests := []struct {
		name       string
		target     string
		wantStatus int
		wantCode   string
		wantBody   string // exact JSON for the list responses
	}{
		{"invoices without order_id", "/v1/invoices", 400, "validation_failed", ""},
		{"invoices with a bad order_id", "/v1/invoices?order_id=42", 400, "validation_failed", ""},
		{"emails without order_id", "/v1/emails", 400, "validation_failed", ""},
		{"emails with a bad order_id", "/v1/emails?order_id=nope", 400, "validation_failed", ""},
		{"no invoices", "/v1/invoices?order_id=" + other.OrderID, 200, "", `{"invoices":[]}`},
		{"no emails", "/v1/emails?order_id=" + other.OrderID, 200, "", `{"emails":[]}`},
		{"healthz", "/healthz", 200, "", `{"status":"ok"}`},
		{"readyz", "/readyz", 200, "", `{"status":"ready"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := get(h, tt.target, "admin")
			if rec.Code != tt.wantStatus {
				t.Fatalf("GET %s = %d; want %d (%s)", tt.target, rec.Code, tt.wantStatus, rec.Body)
			}
			if tt.wantCode != "" {
				var p struct {
					Code   string            `json:"code"`
					Errors map[string]string `json:"errors"`
				}
				decodeJSON(t, rec, &p)
				if p.Code != tt.wantCode || p.Errors["order_id"] == "" {
					t.Errorf("problem = %+v; want code %s with an order_id error", p, tt.wantCode)
				}
				if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
					t.Errorf("Content-Type = %q; want application/problem+json", ct)
				}
				return
			}
			if tt.wantBody != "" {
				if got := rec.Body.String(); got != tt.wantBody+"\n" {
					t.Errorf("body = %s; want %s", got, tt.wantBody)
				}
			}
		})
	}

	t.Run("POST is 405", func(t *testing.T) {
		if rec := send(h, http.MethodPost, "/v1/invoices?order_id="+other.OrderID, "admin"); rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("POST /v1/invoices = %d; want 405", rec.Code)
		}
	})

	t.Run("invoices of an order", func(t *testing.T) {
		rec := get(h, "/v1/invoices?order_id="+confirmed.OrderID, "owner")
		if rec.Code != http.StatusOK {
			t.Fatalf("status = %d; want 200 (%s)", rec.Code, rec.Body)
		}
		type line struct {
			SKU            string `json:"sku"`
			Quantity       int    `json:"quantity"`
			UnitPriceCents int64  `json:"unit_price_cents"`
		}
		type invoice struct {
			Number     int64     `json:"number"`
			OrderID    string    `json:"order_id"`
			TotalCents int64     `json:"total_cents"`
			Currency   string    `json:"currency"`
			Lines      []line    `json:"lines"`
			CreatedAt  time.Time `json:"created_at"`
		}
		var got struct {
			Invoices []invoice `json:"invoices"`
		}
		decodeJSON(t, rec, &got)
		want := []invoice{{
			Number: 1, OrderID: confirmed.OrderID, TotalCents: 3499, Currency: "USD",
			Lines: []line{{"SKU-00001", 2, 1250}, {"SKU-00002", 1, 999}},
		}}
		if diff := cmp.Diff(want, got.Invoices, cmpopts.IgnoreFields(invoice{}, "CreatedAt")); diff != "" {
			t.Errorf("invoices (-want +got):\n%s", diff)
		}
		if len(got.Invoices) == 1 && time.Since(got.Invoices[0].CreatedAt) > time.Hour {
			t.Errorf("created_at = %v; want about now", got.Invoices[0].CreatedAt)
		}
	})

	t.Run("emails of an order", func(t *testing.T) {
		rec := get(h, "/v1/emails?order_id="+confirmed.OrderID, "owner")
		if rec.Code != http.StatusOK {
			t.Fatalf("status = %d; want 200 (%s)", rec.Code, rec.Body)
		}
		type email struct {
			To      string     `json:"to"`
			Subject string     `json:"subject"`
			Kind    string     `json:"kind"`
			OrderID string     `json:"order_id"`
			SentAt  *time.Time `json:"sent_at"`
		}
		var got struct {
			Emails []email `json:"emails"`
		}
		decodeJSON(t, rec, &got)
		want := []email{{
			To: "buyer@example.com", Subject: "Your order " + confirmed.OrderID + " is confirmed",
			Kind: "order_confirmed", OrderID: confirmed.OrderID,
		}}
		if diff := cmp.Diff(want, got.Emails, cmpopts.IgnoreFields(email{}, "SentAt")); diff != "" {
			t.Errorf("emails (-want +got):\n%s", diff)
		}
		if len(got.Emails) == 1 && got.Emails[0].SentAt == nil {
			t.Error("sent_at = null; want the send time")
		}
	})
}

// TestHandler_Access: a customer reads only their own order's invoices and
// e-mails; another customer's are a 404 that looks like none at all.
func TestHandler_Access(t *testing.T) {
	t.Parallel()
	h, _, _, e := newHandlerWithOrder(t)
	none := newEvent(events.OrderConfirmed, "")
	tests := []struct {
		name, target, token string
		want                int
		code                string
	}{
		{"owner's invoices", "/v1/invoices?order_id=" + e.OrderID, "owner", 200, ""},
		{"owner's e-mails", "/v1/emails?order_id=" + e.OrderID, "owner", 200, ""},
		{"admin reads any", "/v1/emails?order_id=" + e.OrderID, "admin", 200, ""},
		{"another customer's invoices", "/v1/invoices?order_id=" + e.OrderID, "other", 404, "not_found"},
		{"another customer's e-mails", "/v1/emails?order_id=" + e.OrderID, "other", 404, "not_found"},
		{"an order with none, as a customer", "/v1/invoices?order_id=" + none.OrderID, "owner", 404, "not_found"},
		{"no token", "/v1/invoices?order_id=" + e.OrderID, "", 401, "unauthorized"},
		{"forged token", "/v1/invoices?order_id=" + e.OrderID, "forged", 401, "unauthorized"},
		{"the order service's token", "/v1/invoices?order_id=" + e.OrderID, "order", 403, "insufficient_scope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := get(h, tc.target, tc.token)
			if rec.Code != tc.want {
				t.Fatalf("GET %s as %q = %d; want %d (%s)", tc.target, tc.token, rec.Code, tc.want, rec.Body)
			}
			if tc.code != "" && !strings.Contains(rec.Body.String(), `"code":"`+tc.code+`"`) {
				t.Errorf("body %s; want code %s", rec.Body, tc.code)
			}
			if tc.want == 404 && strings.Contains(rec.Body.String(), e.OrderID) {
				t.Errorf("404 body %s names the order", rec.Body)
			}
		})
	}
}
