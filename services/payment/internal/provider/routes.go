package provider

import (
	"crypto/subtle"
	"log/slog"
	"net/http"

	"github.com/orderflow/orderflow/pkg/web"
)

// NewHandler returns the provider's HTTP API: every route is here. ready
// holds the readiness checks behind /readyz; metrics serves GET /metrics
// (nil: no such route). Like a real card processor's, every call but the
// probes and the scrape needs the merchant's secret key:
// "Authorization: Bearer <apiKey>" (an empty apiKey locks them).
func NewHandler(log *slog.Logger, sim *Simulator, ready map[string]web.Check, metrics http.Handler, apiKey string) http.Handler {
	r := web.NewRouter(log)
	// Anonymous: the probes and the scrape.
	r.Method(http.MethodGet, "/healthz", web.Healthz())
	r.Method(http.MethodGet, "/readyz", web.Readyz(ready))
	if metrics != nil {
		r.Method(http.MethodGet, "/metrics", metrics)
	}

	// The merchant (the payment service), with its API key.
	merchant := r.With(requireKey(apiKey))
	merchant.Method(http.MethodPost, "/v1/charges", handleChargeCreate(log, sim))
	merchant.Method(http.MethodGet, "/v1/charges", handleChargeList(log, sim)) // ?idempotency_key=
	merchant.Method(http.MethodGet, "/v1/charges/{id}", handleChargeGet(log, sim))
	merchant.Method(http.MethodPost, "/v1/charges/{id}/refund", handleChargeRefund(log, sim))
	merchant.Method(http.MethodGet, "/admin/config", handleConfigGet(sim))
	merchant.Method(http.MethodPut, "/admin/config", handleConfigPut(log, sim))
	merchant.Method(http.MethodGet, "/admin/totals", handleTotals(log, sim))
	return r
}

// requireKey lets a request through only with "Authorization: Bearer
// <key>", compared in constant time. An empty key refuses every call.
func requireKey(key string) func(http.Handler) http.Handler {
	want := []byte("Bearer " + key)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got := []byte(r.Header.Get("Authorization"))
			if key == "" || subtle.ConstantTimeCompare(got, want) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="provider"`)
				web.WriteProblem(w, web.NewProblem(http.StatusUnauthorized, "unauthorized",
					"provider calls need Authorization: Bearer <API key>"))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
