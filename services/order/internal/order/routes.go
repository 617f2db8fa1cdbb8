package order

import (
	"log/slog"
	"net/http"

	"github.com/orderflow/orderflow/pkg/auth"
	"github.com/orderflow/orderflow/pkg/web"
)

// NewHandler returns the order service's HTTP API: every route is here.
// ready holds the readiness checks behind /readyz; metrics serves
// GET /metrics (nil: no such route); authn verifies the caller's access
// token (nil: none is read, so only the probes and the scrape answer);
// limit is the per-caller rate limiter of the public routes (nil: none).
func NewHandler(log *slog.Logger, svc *Service, ready map[string]web.Check, metrics http.Handler, authn, limit func(http.Handler) http.Handler) http.Handler {
	r := web.NewRouter(log)
	if authn != nil {
		r.Use(authn) // before the limiter: it keys on the token's subject
	}
	// Anonymous: the probes and the scrape.
	r.Method(http.MethodGet, "/healthz", web.Healthz())
	r.Method(http.MethodGet, "/readyz", web.Readyz(ready))
	if metrics != nil {
		r.Method(http.MethodGet, "/metrics", metrics)
	}

	public := r.With()
	if limit != nil {
		public = r.With(limit)
	}
	// Every route below has a deadline (shortened by the caller's
	// Request-Timeout): a saga or a cancel gets RequestTimeout, a read
	// ReadTimeout. See docs/patterns/resilience.md, "Time budgets".
	writes := web.Deadline(svc.cfg.RequestTimeout)
	reads := web.Deadline(svc.cfg.ReadTimeout)

	// A customer (scope orders), on their own orders: the use cases take
	// the customer from the token.
	customer := public.With(writes, auth.Require(auth.ScopeOrders))
	customer.Method(http.MethodPost, "/v1/orders", handleOrderCreate(log, svc))
	customer.Method(http.MethodPost, "/v1/orders/{id}/cancel", handleOrderCancel(log, svc))
	// A customer (their own) or an operator (orderflow.admin: any).
	reader := public.With(reads, auth.Require(auth.ScopeOrders, auth.ScopeAdmin))
	reader.Method(http.MethodGet, "/v1/orders", handleOrderList(log, svc))
	reader.Method(http.MethodGet, "/v1/orders/{id}", handleOrderGet(log, svc))

	// Admin (orderflow.admin): the compensations the recovery loop gave up
	// on, and sending one back to it. Not behind the gateway.
	admin := r.With(reads, auth.Require(auth.ScopeAdmin))
	admin.Method(http.MethodGet, "/admin/compensations", handleCompensationList(log, svc))
	admin.Method(http.MethodPost, "/admin/compensations/{order_id}/retry", handleCompensationRetry(log, svc))
	return r
}
