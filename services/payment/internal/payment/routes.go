package payment

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/orderflow/orderflow/pkg/auth"
	"github.com/orderflow/orderflow/pkg/web"
)

// NewHandler returns the payment service's HTTP API: every route is here.
// ready holds the readiness checks behind /readyz; metrics serves
// GET /metrics (nil: no such route); authn verifies the caller's access
// token (nil: none is read, so only the probes and the scrape answer).
func NewHandler(log *slog.Logger, svc *Service, ready map[string]web.Check, metrics http.Handler, authn func(http.Handler) http.Handler) http.Handler {
	r := web.NewRouter(log)
	r.Use(web.Deadline(RequestTimeout))
	if authn != nil {
		r.Use(authn)
	}
	// Anonymous: the probes and the scrape.
	r.Method(http.MethodGet, "/healthz", web.Healthz())
	// The provider is deliberately not among ready's checks: during a
	// provider outage payment stays in rotation and answers 503 fast
	// instead of disappearing from the load balancer.
	r.Method(http.MethodGet, "/readyz", web.Readyz(ready))
	if metrics != nil {
		r.Method(http.MethodGet, "/metrics", metrics)
	}

	// The order service (scope payments): charges and refunds.
	charge := r.With(auth.Require(auth.ScopePayments))
	charge.Method(http.MethodPost, "/v1/payments", handlePaymentCreate(log, svc))
	charge.Method(http.MethodPost, "/v1/payments/{id}/refund", handlePaymentRefund(log, svc))

	// The order service or an operator (payments or orderflow.admin): reads.
	read := r.With(auth.Require(auth.ScopePayments, auth.ScopeAdmin))
	read.Method(http.MethodGet, "/v1/payments", handlePaymentList(log, svc))
	read.Method(http.MethodGet, "/v1/payments/{id}", handlePaymentGet(log, svc))

	// Admin (orderflow.admin): the simulated provider's behaviour.
	admin := r.With(auth.Require(auth.ScopeAdmin))
	admin.Method(http.MethodGet, "/admin/provider", handleProviderConfig(log, svc))
	admin.Method(http.MethodPut, "/admin/provider", handleProviderConfig(log, svc))
	return r
}

// RequestTimeout is the deadline of every request, shortened by the caller's
// Request-Timeout (order sends its attempt's 4 s): longer than a provider
// call with its retries, which run checks at start-up
// (docs/patterns/resilience.md, "Time budgets").
const RequestTimeout = 10 * time.Second
