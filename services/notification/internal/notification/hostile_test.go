package notification_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/orderflow/orderflow/pkg/events"
	"github.com/orderflow/orderflow/pkg/smtptest"
	"github.com/orderflow/orderflow/pkg/web"
	"github.com/orderflow/orderflow/pkg/web/webtest"
	"github.com/orderflow/orderflow/services/notification/internal/notification"
)

// TestHostile drives every route of NewHandler with generated hostile
// values, mostly behind a token the route accepts so they reach the use
// cases, the database and the SMTP server: no answer may be a 5xx, every
// 4xx is a problem. HOSTILE_SEED repeats a run, HOSTILE_N sets the requests
// per route.
func TestHostile(t *testing.T) {
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

	readers := []string{"owner", "other", "admin"}
	webtest.Run(t, h, webtest.Config{
		Tokens: []string{"admin", "owner", "other", "order"},
		Wrap:   web.ClientAddr([]netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}),
		Routes: []webtest.Route{
			{Method: "GET", Pattern: "/healthz"},
			{Method: "GET", Pattern: "/readyz"},
			{Method: "GET", Pattern: "/v1/invoices", Tokens: readers, Query: map[string]string{"order_id": e.OrderID}},
			{Method: "GET", Pattern: "/v1/emails", Tokens: readers, Query: map[string]string{"order_id": e.OrderID}},
			{Method: "POST", Pattern: "/internal/notify", Tokens: []string{"order"},
				Body: `{"id":"$uuid","type":"order.confirmed","order_id":"$uuid","customer_id":"cus_1",` +
					`"email":"buyer@example.com","status":"confirmed",` +
					`"items":[{"sku":"SKU-00001","quantity":2,"unit_price_cents":1250},{"sku":"SKU-00002","quantity":1,"unit_price_cents":999}],` +
					`"total_cents":3499,"currency":"USD","failure_reason":"","occurred_at":"2026-01-02T03:04:05Z"}`},
		},
	})
}

// TestHostile_Found pins the inputs TestHostile found answered with a 500
// (a NUL reached PostgreSQL; uuid.Parse let "(…)" through to a uuid
// column): each is a 400 now, and nothing is stored.
func TestHostile_Found(t *testing.T) {
	t.Parallel()
	smtp := smtptest.Start(t)
	svc, pool := newService(t, smtp.Addr())
	h := notification.NewHandler(testLogger(t), svc, testAuthn, map[string]web.Check{"postgres": svc.Ready})
	for name, change := range map[string]func(e *events.Order){
		"NUL in currency":      func(e *events.Order) { e.Currency = "USD\x00" },
		"NUL in customer_id":   func(e *events.Order) { e.CustomerID = "cus_1\x00" },
		"NUL in a sku":         func(e *events.Order) { e.Items[0].SKU = "\x00" },
		"escape in a sku":      func(e *events.Order) { e.Items[1].SKU = "\x1b[2J" },
		"id in parentheses":    func(e *events.Order) { e.ID = "(" + e.ID + ")" },
		"order_id with braces": func(e *events.Order) { e.OrderID = "{" + e.OrderID + "}" },
		"NUL in the reason": func(e *events.Order) {
			e.Type, e.FailureReason = events.OrderPaymentFailed, "declined\x00"
		},
	} {
		e := newEvent(events.OrderConfirmed, "buyer@example.com")
		change(&e)
		body, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		req := withToken(httptest.NewRequest(http.MethodPost, "/internal/notify", bytes.NewReader(body)), "order")
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusBadRequest {
			t.Errorf("notify with %s = %d %s; want 400", name, rec.Code, rec.Body)
		}
	}
	if n := count(t, pool, `SELECT (SELECT count(*) FROM invoices) + (SELECT count(*) FROM emails)`); n != 0 {
		t.Errorf("%d invoices and e-mails stored; want none", n)
	}
	if rec := get(h, "/v1/invoices?order_id=("+newEvent("", "").OrderID+")", "admin"); rec.Code != http.StatusBadRequest {
		t.Errorf("GET /v1/invoices?order_id=(…) = %d; want 400", rec.Code)
	}
}
