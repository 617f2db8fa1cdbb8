package order

import (
	"log/slog"
	"net/http"

	"github.com/orderflow/orderflow/pkg/web"
)

// NewHandler returns the order service's HTTP API: every route is here.
// ready holds the readiness checks behind /readyz.
func NewHandler(log *slog.Logger, svc *Service, ready map[string]web.Check) http.Handler {
	r := web.NewRouter(log)
	r.Method(http.MethodGet, "/healthz", web.Healthz())
	r.Method(http.MethodGet, "/readyz", web.Readyz(ready))

	r.Method(http.MethodPost, "/v1/orders", handleOrderCreate(log, svc))
	r.Method(http.MethodGet, "/v1/orders", handleOrderList(log, svc))
	r.Method(http.MethodGet, "/v1/orders/{id}", handleOrderGet(log, svc))
	r.Method(http.MethodPost, "/v1/orders/{id}/cancel", handleOrderCancel(log, svc))
	return r
}
