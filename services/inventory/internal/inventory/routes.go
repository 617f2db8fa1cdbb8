package inventory

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/orderflow/orderflow/pkg/auth"
	"github.com/orderflow/orderflow/pkg/web"
)

// NewHandler returns the whole HTTP API of inventory. metrics serves
// GET /metrics (nil: no such route); authn verifies the caller's access
// token (nil: none is read, so only anonymous routes answer); rateLimit
// (nil for none) guards the public catalogue reads; probes, scrapes, admin
// calls and the reservation calls of the order saga are not limited.
func NewHandler(log *slog.Logger, svc *Service, metrics http.Handler, authn, rateLimit func(http.Handler) http.Handler) http.Handler {
	r := web.NewRouter(log)
	r.Use(web.Deadline(requestTimeout))
	if authn != nil {
		r.Use(authn)
	}
	if rateLimit == nil {
		rateLimit = func(h http.Handler) http.Handler { return h }
	}
	admin := r.With(auth.Require(auth.ScopeAdmin))
	saga := r.With(auth.Require(auth.ScopeReservations))

	// Anonymous: probes, the scrape and the catalogue.
	r.Method(http.MethodGet, "/healthz", web.Healthz())
	r.Method(http.MethodGet, "/readyz", web.Readyz(map[string]web.Check{"postgres": svc.Ping}))
	if metrics != nil {
		r.Method(http.MethodGet, "/metrics", metrics)
	}
	r.With(rateLimit).Method(http.MethodGet, "/v1/products", handleProductList(log, svc))
	r.With(rateLimit).Method(http.MethodGet, "/v1/products/{sku}", handleProductGet(log, svc))

	// Admin (scope orderflow.admin).
	admin.Method(http.MethodPut, "/v1/products/{sku}/stock", handleStockPut(log, svc))

	// The order service's saga (scope inventory.reservations).
	saga.Method(http.MethodPost, "/v1/reservations", handleReservationCreate(log, svc))
	saga.Method(http.MethodGet, "/v1/reservations/{order_id}", handleReservationGet(log, svc))
	saga.Method(http.MethodPost, "/v1/reservations/{order_id}/commit", handleReservationCommit(log, svc))
	saga.Method(http.MethodPost, "/v1/reservations/{order_id}/release", handleReservationRelease(log, svc))

	return r
}

// requestTimeout is the deadline of every request (shortened by the
// caller's Request-Timeout): no route needs more, and none may hold a
// connection or goroutine longer (docs/patterns/resilience.md, "Time budgets").
const requestTimeout = 5 * time.Second
