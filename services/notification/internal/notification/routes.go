package notification

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/orderflow/orderflow/pkg/auth"
	"github.com/orderflow/orderflow/pkg/web"
)

// NewHandler returns the service's HTTP API: every route is here. ready
// holds the /readyz checks (database, SQS), which main assembles because
// it owns the SQS client; metrics serves GET /metrics (nil: no such
// route); authn verifies the caller's access token (nil: none is read, so
// only the probes and the scrape answer).
func NewHandler(log *slog.Logger, svc *Service, ready map[string]web.Check, metrics http.Handler, authn func(http.Handler) http.Handler) http.Handler {
	r := web.NewRouter(log)
	r.Use(web.Deadline(requestTimeout))
	if authn != nil {
		r.Use(authn)
	}
	// Anonymous: the probes and the scrape.
	r.Method(http.MethodGet, "/healthz", web.Healthz())
	r.Method(http.MethodGet, "/readyz", web.Readyz(ready))
	if metrics != nil {
		r.Method(http.MethodGet, "/metrics", metrics)
	}

	// A customer (their own orders' documents only, decided in the use
	// case) or an operator (any).
	read := r.With(auth.Require(auth.ScopeOrders, auth.ScopeAdmin))
	read.Method(http.MethodGet, "/v1/invoices", handleInvoiceList(log, svc))
	read.Method(http.MethodGet, "/v1/emails", handleEmailList(log, svc))
	return r
}

// requestTimeout is the deadline of every request (shortened by the
// caller's Request-Timeout): no route needs more, and none may hold a
// connection or goroutine longer (docs/patterns/resilience.md, "Time budgets").
const requestTimeout = 5 * time.Second
