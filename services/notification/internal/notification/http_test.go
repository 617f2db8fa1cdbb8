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
	"order": {Subject: "orderflow-order", Scopes: []string{auth.ScopeNotify, auth.ScopePayments}},
})

// get sends GET target as the caller with token ("" for none).
func get(h http.Handler, target, token string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, target, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestHandler_Lists(t *testing.T) {
	t.Parallel()
	smtp := smtptest.Start(t)
	svc, pool := newService(t, smtp.Addr())
	h := notification.NewHandler(testLogger(t), svc, testAuthn, map[string]web.Check{"postgres": svc.Ready})
	ctx := context.Background()

	confirmed := newEvent(events.OrderConfirmed, "buyer@example.com")
	if err := svc.HandleInvoice(ctx, confirmed); err != nil {
		t.Fatal(err)
	}
	if err := svc.HandleEmail(ctx, confirmed); err != nil {
		t.Fatal(err)
	}
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
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, withToken(httptest.NewRequest(http.MethodGet, tt.target, nil), "admin"))
			if rec.Code != tt.wantStatus {
				t.Fatalf("GET %s = %d; want %d (%s)", tt.target, rec.Code, tt.wantStatus, rec.Body)
			}
			if tt.wantCode != "" {
				var p struct {
					Code   string            `json:"code"`
					Errors map[string]string `json:"errors"`
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
					t.Fatal(err)
				}
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
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, withToken(httptest.NewRequest(http.MethodPost, "/v1/invoices?order_id="+other.OrderID, nil), "admin"))
		if rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("POST /v1/invoices = %d; want 405", rec.Code)
		}
	})

	t.Run("invoices of an order", func(t *testing.T) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, withToken(httptest.NewRequest(http.MethodGet, "/v1/invoices?order_id="+confirmed.OrderID, nil), "owner"))
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
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
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
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, withToken(httptest.NewRequest(http.MethodGet, "/v1/emails?order_id="+confirmed.OrderID, nil), "owner"))
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
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
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

func TestHandler_Notify(t *testing.T) {
	t.Parallel()
	smtp := smtptest.Start(t)
	svc, pool := newService(t, smtp.Addr())
	h := notification.NewHandler(testLogger(t), svc, testAuthn, map[string]web.Check{"postgres": svc.Ready})
	confirmed := newEvent(events.OrderConfirmed, "buyer@example.com")
	body, err := json.Marshal(confirmed)
	if err != nil {
		t.Fatal(err)
	}
	post := func(body string) *httptest.ResponseRecorder {
		req := withToken(httptest.NewRequest(http.MethodPost, "/internal/notify", strings.NewReader(body)), "order")
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}

	tests := []struct {
		name       string
		body       string
		wantStatus int
	}{
		{"an event is handled at once", string(body), http.StatusOK},
		{"the same event again changes nothing", string(body), http.StatusOK},
		{"not JSON", "{", http.StatusBadRequest},
		{"unknown field", `{"nope":1}`, http.StatusBadRequest},
		{"invalid event", `{"id":"x","type":"order.confirmed"}`, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := post(tt.body)
			if rec.Code != tt.wantStatus {
				t.Fatalf("POST /internal/notify = %d; want %d (%s)", rec.Code, tt.wantStatus, rec.Body)
			}
		})
	}

	// Both effects happened before the answer, each exactly once.
	if n := count(t, pool, `SELECT count(*) FROM invoices WHERE order_id = $1`, confirmed.OrderID); n != 1 {
		t.Errorf("invoices = %d; want 1", n)
	}
	if n := len(smtp.Messages()); n != 1 {
		t.Errorf("e-mails sent = %d; want 1", n)
	}
}

func withToken(r *http.Request, token string) *http.Request {
	r.Header.Set("Authorization", "Bearer "+token)
	return r
}

// TestHandler_Access: a customer reads only their own order's invoices and
// e-mails; another customer's are a 404 that looks like none at all.
func TestHandler_Access(t *testing.T) {
	t.Parallel()
	smtp := smtptest.Start(t)
	svc, _ := newService(t, smtp.Addr())
	h := notification.NewHandler(testLogger(t), svc, testAuthn, map[string]web.Check{"postgres": svc.Ready})
	e := newEvent(events.OrderConfirmed, "buyer@example.com")
	if err := svc.HandleInvoice(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if err := svc.HandleEmail(context.Background(), e); err != nil {
		t.Fatal(err)
	}
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
		{"notify with a customer token", "/internal/notify", "owner", 405, ""},
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
	req := withToken(httptest.NewRequest(http.MethodPost, "/internal/notify", strings.NewReader("{}")), "owner")
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("POST /internal/notify with a customer token = %d; want 403", rec.Code)
	}
}
