package notification

import (
	"log/slog"
	"net/http"

	"github.com/orderflow/orderflow/pkg/web"
)

// NewHandler returns the service's HTTP API. ready holds the /readyz checks
// (database, SQS), which main assembles because it owns the SQS client.
func NewHandler(log *slog.Logger, svc *Service, ready map[string]web.Check) http.Handler {
	r := web.NewRouter(log)
	r.Method(http.MethodGet, "/healthz", web.Healthz())
	r.Method(http.MethodGet, "/readyz", web.Readyz(ready))
	r.Method(http.MethodGet, "/v1/invoices", handleInvoiceList(log, svc))
	r.Method(http.MethodGet, "/v1/emails", handleEmailList(log, svc))
	// Internal: order calls it only with ORDER_NOTIFY_INLINE=true, the
	// benchmark's "patterns off" configuration. Not for the public API.
	r.Method(http.MethodPost, "/internal/notify", handleNotify(log, svc))
	return r
}
