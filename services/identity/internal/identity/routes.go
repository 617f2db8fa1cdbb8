package identity

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/orderflow/orderflow/pkg/web"
)

// NewHandler returns the identity service's HTTP API: sign-up as JSON, and
// the login and consent pages Hydra sends browsers to. Every route is
// anonymous: a customer has no token before signing in. The login and
// consent steps are authorised by the challenge Hydra issued for the flow,
// and their forms by a CSRF token bound to that challenge and the browser.
// metrics serves GET /metrics (nil: no such route).
func NewHandler(log *slog.Logger, svc *Service, csrf *CSRF, metrics http.Handler) (http.Handler, error) {
	pg, err := parsePages()
	if err != nil {
		return nil, err
	}
	r := web.NewRouter(log)
	r.Use(web.Deadline(requestTimeout))
	// Anyone: probes and the scrape.
	r.Method(http.MethodGet, "/healthz", web.Healthz())
	r.Method(http.MethodGet, "/readyz", web.Readyz(map[string]web.Check{
		"postgres": svc.Ready, "hydra": svc.HydraReady,
	}))
	if metrics != nil {
		r.Method(http.MethodGet, "/metrics", metrics)
	}

	// Anonymous: sign-up.
	r.Method(http.MethodPost, "/v1/customers", handleCustomerCreate(log, svc))

	// Anonymous browsers holding a login challenge: the form, then its
	// submission (CSRF token, rate limits per account and address).
	r.Method(http.MethodGet, "/login", handleLoginForm(log, svc, csrf, pg))
	r.Method(http.MethodPost, "/login", handleLoginSubmit(log, svc, csrf, pg))

	// Anonymous browsers holding a consent challenge (issued only after a
	// login was accepted): skipped for first-party clients.
	r.Method(http.MethodGet, "/consent", handleConsentForm(log, svc, csrf, pg))
	r.Method(http.MethodPost, "/consent", handleConsentSubmit(log, svc, csrf, pg))
	return r, nil
}

// requestTimeout is the deadline of every request (shortened by the
// caller's Request-Timeout): longer than a call to Hydra with its retries
// (IDENTITY_HYDRA_TIMEOUT 3 s × 3 + backoffs = 11.5 s), so a login is never
// cut off between Hydra's answers (docs/patterns/resilience.md, "Time budgets").
const requestTimeout = 15 * time.Second
