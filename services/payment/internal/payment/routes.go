package payment

import (
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/pkg/web"
)

// NewHandler returns the payment service's HTTP API. Admin routes need
// "Authorization: Bearer <adminToken>".
func NewHandler(log *slog.Logger, svc *Service, adminToken string) http.Handler {
	r := web.NewRouter(log)
	r.Method(http.MethodGet, "/healthz", web.Healthz())
	r.Method(http.MethodGet, "/readyz", web.Readyz(map[string]web.Check{"postgres": svc.Ready}))

	r.Method(http.MethodPost, "/v1/payments", handlePaymentCreate(log, svc))
	r.Method(http.MethodGet, "/v1/payments", handlePaymentList(log, svc))
	r.Method(http.MethodGet, "/v1/payments/{id}", handlePaymentGet(log, svc))
	r.Method(http.MethodPost, "/v1/payments/{id}/refund", handlePaymentRefund(log, svc))

	r.Group(func(r chi.Router) {
		r.Use(web.RequireAdmin(adminToken))
		r.Method(http.MethodGet, "/admin/provider", handleProviderConfig(log, svc))
		r.Method(http.MethodPut, "/admin/provider", handleProviderConfig(log, svc))
	})
	return r
}
