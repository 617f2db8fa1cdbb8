package inventory

import (
	"log/slog"
	"net/http"

	"github.com/orderflow/orderflow/pkg/web"
)

// NewHandler returns the whole HTTP API of inventory. Admin routes need
// "Authorization: Bearer adminToken"; an empty adminToken locks them.
// rateLimit (nil for none) guards the public catalogue reads; probes, admin
// calls and the reservation calls of the order saga are not limited.
func NewHandler(log *slog.Logger, svc *Service, adminToken string, rateLimit func(http.Handler) http.Handler) http.Handler {
	r := web.NewRouter(log)
	if rateLimit == nil {
		rateLimit = func(h http.Handler) http.Handler { return h }
	}

	r.Method(http.MethodGet, "/healthz", web.Healthz())
	r.Method(http.MethodGet, "/readyz", web.Readyz(map[string]web.Check{"postgres": svc.Ping}))

	r.With(rateLimit).Method(http.MethodGet, "/v1/products", handleProductList(log, svc))
	r.With(rateLimit).Method(http.MethodGet, "/v1/products/{sku}", handleProductGet(log, svc))
	r.With(web.RequireAdmin(adminToken)).
		Method(http.MethodPut, "/v1/products/{sku}/stock", handleStockPut(log, svc))

	r.Method(http.MethodPost, "/v1/reservations", handleReservationCreate(log, svc))
	r.Method(http.MethodGet, "/v1/reservations/{order_id}", handleReservationGet(log, svc))
	r.Method(http.MethodPost, "/v1/reservations/{order_id}/commit", handleReservationCommit(log, svc))
	r.Method(http.MethodPost, "/v1/reservations/{order_id}/release", handleReservationRelease(log, svc))

	return r
}
