package notification_test

import (
	"context"
	"errors"
	"net/http"
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
	h, _, _, e := newHandlerWithOrder(t)
	readers := []string{"owner", "other", "admin"}
	webtest.Run(t, h, webtest.Config{
		Tokens: []string{"admin", "owner", "other", "order"},
		Wrap:   web.ClientAddr([]netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}),
		Routes: []webtest.Route{
			{Method: "GET", Pattern: "/healthz"},
			{Method: "GET", Pattern: "/readyz"},
			{Method: "GET", Pattern: "/v1/invoices", Tokens: readers, Query: map[string]string{"order_id": e.OrderID}},
			{Method: "GET", Pattern: "/v1/emails", Tokens: readers, Query: map[string]string{"order_id": e.OrderID}},
		},
	})
}

// TestHostile_Found pins the events TestHostile once found answered with a
// 500 (a NUL reached PostgreSQL; uuid.Parse let "(…)" through to a uuid
// column): each is malformed for both workers, so its message goes to the
// dead-letter queue instead of failing every retry, and nothing is stored.
// An order id in parentheses is a 400 on the read routes.
func TestHostile_Found(t *testing.T) {
	t.Parallel()
	smtp := smtptest.Start(t)
	svc, pool := newService(t, smtp.Addr())
	h := notification.NewHandler(testLogger(t), svc, map[string]web.Check{"postgres": svc.Ready}, nil, testAuthn)
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
		if err := svc.HandleEmail(context.Background(), e); !errors.Is(err, notification.ErrMalformed) {
			t.Errorf("HandleEmail with %s = %v; want ErrMalformed", name, err)
		}
		// The invoice worker ignores the events it does not invoice.
		if err := svc.HandleInvoice(context.Background(), e); e.Type == events.OrderConfirmed && !errors.Is(err, notification.ErrMalformed) {
			t.Errorf("HandleInvoice with %s = %v; want ErrMalformed", name, err)
		}
	}
	if n := count(t, pool, `SELECT (SELECT count(*) FROM invoices) + (SELECT count(*) FROM emails)`); n != 0 {
		t.Errorf("%d invoices and e-mails stored; want none", n)
	}
	if n := len(smtp.Messages()); n != 0 {
		t.Errorf("%d e-mails sent; want none", n)
	}
	if rec := get(h, "/v1/invoices?order_id=("+newEvent("", "").OrderID+")", "admin"); rec.Code != http.StatusBadRequest {
		t.Errorf("GET /v1/invoices?order_id=(…) = %d; want 400", rec.Code)
	}
}
