package provider

import (
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/pkg/web"
)

// NewHandler returns the provider's HTTP API. Admin routes need
// "Authorization: Bearer <adminToken>".
func NewHandler(log *slog.Logger, sim *Simulator, adminToken string) http.Handler {
	r := web.NewRouter(log)
	r.Method(http.MethodGet, "/healthz", web.Healthz())
	r.Method(http.MethodGet, "/readyz", web.Readyz(nil))

	r.Method(http.MethodPost, "/v1/charges", handleChargeCreate(log, sim))
	r.Method(http.MethodGet, "/v1/charges/{id}", handleChargeGet(log, sim))
	r.Method(http.MethodPost, "/v1/charges/{id}/refund", handleChargeRefund(log, sim))

	r.Group(func(r chi.Router) {
		r.Use(web.RequireAdmin(adminToken))
		r.Method(http.MethodGet, "/admin/config", handleConfigGet(sim))
		r.Method(http.MethodPut, "/admin/config", handleConfigPut(log, sim))
	})
	return r
}
