package order

import (
	"log/slog"
	"net/http"

	"github.com/orderflow/orderflow/pkg/web"
)

// NewHandler returns the order service's HTTP API: every route is here.
// ready holds the readiness checks behind /readyz; limit is the per-client
// rate limiter of the public routes (nil: none).
func NewHandler(log *slog.Logger, svc *Service, ready map[string]web.Check, limit func(http.Handler) http.Handler) http.Handler {
	r := web.NewRouter(log)
	r.Method(http.MethodGet, "/healthz", web.Healthz())
	r.Method(http.MethodGet, "/readyz", web.Readyz(ready))

	public := r.With()
	if limit != nil {
		public = r.With(limit)
	}
	public.Method(http.MethodPost, "/v1/orders", handleOrderCreate(log, svc))
	public.Method(http.MethodGet, "/v1/orders", handleOrderList(log, svc))
	public.Method(http.MethodGet, "/v1/orders/{id}", handleOrderGet(log, svc))
	public.Method(http.MethodPost, "/v1/orders/{id}/cancel", handleOrderCancel(log, svc))
	return r
}
