package identity

import (
	"bytes"
	"embed"
	"errors"
	"html/template"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/resilience"
	"github.com/orderflow/orderflow/pkg/web"
)

//go:embed templates/*.html
var templateFS embed.FS

// browserCookie holds the browser id that CSRF tokens are bound to.
const browserCookie = "identity_browser"

// maxChallengeLen bounds a challenge before it is sent on to Hydra; Hydra's
// are 1-2 KiB.
const maxChallengeLen = 8 << 10

// wrongCredentials is the one message for a wrong password and an unknown
// e-mail alike.
const wrongCredentials = "wrong e-mail or password"

// notAnEmail answers a login whose e-mail holds control characters or
// invalid UTF-8.
const notAnEmail = "that is not an e-mail address"

// errCSRF refuses a form whose token does not match its challenge and this
// browser's cookie.
var errCSRF = errors.New("csrf token missing or invalid")

// pages renders the server-side HTML of the login and consent steps.
type pages struct{ t *template.Template }

func parsePages() (*pages, error) {
	t, err := template.ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	return &pages{t: t}, nil
}

// render writes the named page with status. The page is rendered into a
// buffer first, so a template error is a clean 500, never half a page.
func (p *pages) render(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := p.t.ExecuteTemplate(&buf, name, data); err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// The pages carry challenges and CSRF tokens: never cached, never
	// framed (clickjacking), never leaked in a Referer.
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

type loginPage struct {
	Title, ClientName, Error, Challenge, CSRFToken, Email string
}

type consentPage struct {
	Title, ClientName, Challenge, CSRFToken string
	Scopes                                  []string
}

type messagePage struct {
	Title, Message string
}

type customerRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
	Name     string `json:"name"`
}

type customerResponse struct {
	ID    string `json:"id"`
	Email string `json:"email"`
	Name  string `json:"name"`
}

func handleCustomerCreate(log *slog.Logger, svc *Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in customerRequest
		if err := web.Decode(r, web.MaxBodyBytes, &in); err != nil {
			writeError(w, r, log, nil, err)
			return
		}
		req, problems := SignUp(in).Normalize()
		if err := web.ValidationProblem(problems); err != nil {
			writeError(w, r, log, nil, err)
			return
		}
		c, err := svc.SignUp(r.Context(), clientIP(r), req)
		if err != nil {
			writeError(w, r, log, nil, err)
			return
		}
		web.WriteJSON(w, http.StatusCreated, customerResponse{ID: c.ID, Email: c.Email, Name: c.Name})
	})
}

func handleLoginForm(log *slog.Logger, svc *Service, csrf *CSRF, pg *pages) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		challenge, err := challengeParam(r.URL.Query().Get("login_challenge"))
		if err != nil {
			writeError(w, r, log, pg, err)
			return
		}
		step, err := svc.StartLogin(r.Context(), challenge)
		if err != nil {
			writeError(w, r, log, pg, err)
			return
		}
		if step.RedirectTo != "" {
			http.Redirect(w, r, step.RedirectTo, http.StatusFound)
			return
		}
		browser := ensureBrowser(w, r)
		pg.render(w, http.StatusOK, "login", loginPage{
			Title: "Sign in", ClientName: step.ClientName, Challenge: challenge,
			CSRFToken: csrf.Token(PurposeLogin, challenge, browser),
		})
	})
}

func handleLoginSubmit(log *slog.Logger, svc *Service, csrf *CSRF, pg *pages) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := parseForm(w, r); err != nil {
			writeError(w, r, log, pg, err)
			return
		}
		challenge, err := challengeParam(r.PostForm.Get("login_challenge"))
		if err != nil {
			writeError(w, r, log, pg, err)
			return
		}
		browser := cookieBrowser(r)
		token := r.PostForm.Get("csrf_token")
		if !csrf.Valid(token, PurposeLogin, challenge, browser) {
			writeError(w, r, log, pg, errCSRF)
			return
		}
		email := r.PostForm.Get("email")
		if !web.PlainText(strings.TrimSpace(email)) {
			// No account has such an address (sign-up refuses it), and
			// the database refuses a NUL or invalid UTF-8 in a lookup.
			pg.render(w, http.StatusBadRequest, "login", loginPage{
				Title: "Sign in", Error: notAnEmail, Challenge: challenge, CSRFToken: token,
			})
			return
		}
		to, err := svc.Login(r.Context(), LoginAttempt{
			Challenge: challenge, Email: email, Password: r.PostForm.Get("password"), ClientIP: clientIP(r),
		})
		if errors.Is(err, ErrWrongCredentials) {
			pg.render(w, http.StatusOK, "login", loginPage{
				Title: "Sign in", Error: wrongCredentials, Challenge: challenge, CSRFToken: token, Email: email,
			})
			return
		}
		if err != nil {
			writeError(w, r, log, pg, err)
			return
		}
		http.Redirect(w, r, to, http.StatusSeeOther)
	})
}

func handleConsentForm(log *slog.Logger, svc *Service, csrf *CSRF, pg *pages) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		challenge, err := challengeParam(r.URL.Query().Get("consent_challenge"))
		if err != nil {
			writeError(w, r, log, pg, err)
			return
		}
		step, err := svc.StartConsent(r.Context(), challenge)
		if err != nil {
			writeError(w, r, log, pg, err)
			return
		}
		if step.RedirectTo != "" {
			http.Redirect(w, r, step.RedirectTo, http.StatusFound)
			return
		}
		browser := ensureBrowser(w, r)
		pg.render(w, http.StatusOK, "consent", consentPage{
			Title: "Allow access?", ClientName: step.ClientName, Scopes: step.Scopes, Challenge: challenge,
			CSRFToken: csrf.Token(PurposeConsent, challenge, browser),
		})
	})
}

func handleConsentSubmit(log *slog.Logger, svc *Service, csrf *CSRF, pg *pages) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := parseForm(w, r); err != nil {
			writeError(w, r, log, pg, err)
			return
		}
		challenge, err := challengeParam(r.PostForm.Get("consent_challenge"))
		if err != nil {
			writeError(w, r, log, pg, err)
			return
		}
		if !csrf.Valid(r.PostForm.Get("csrf_token"), PurposeConsent, challenge, cookieBrowser(r)) {
			writeError(w, r, log, pg, errCSRF)
			return
		}
		var grant bool
		switch r.PostForm.Get("decision") {
		case "allow":
			grant = true
		case "deny":
		default:
			writeError(w, r, log, pg, web.ValidationProblem(map[string]string{"decision": "must be allow or deny"}))
			return
		}
		to, err := svc.Consent(r.Context(), challenge, grant)
		if err != nil {
			writeError(w, r, log, pg, err)
			return
		}
		http.Redirect(w, r, to, http.StatusSeeOther)
	})
}

// challengeParam checks that a challenge is present and of a size and
// alphabet Hydra could have issued.
func challengeParam(s string) (string, error) {
	if s == "" {
		return "", web.NewProblem(http.StatusBadRequest, "missing_challenge",
			"the sign-in link has no challenge; start again from the application")
	}
	if len(s) > maxChallengeLen || !web.PlainText(s) {
		// Not a challenge Hydra issues: not sent on to it.
		return "", ErrChallengeNotFound
	}
	return s, nil
}

// parseForm reads an application/x-www-form-urlencoded body of at most
// web.MaxBodyBytes into r.PostForm.
func parseForm(w http.ResponseWriter, r *http.Request) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return web.NewProblem(http.StatusUnsupportedMediaType, "unsupported_media_type",
			"Content-Type must be application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(w, r.Body, web.MaxBodyBytes)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return web.NewProblem(http.StatusRequestEntityTooLarge, "body_too_large", "the form is too large")
		}
		return web.NewProblem(http.StatusBadRequest, "bad_form", "the form could not be read")
	}
	return nil
}

// cookieBrowser returns the browser id of r's cookie, or "" when it has
// none.
func cookieBrowser(r *http.Request) string {
	c, err := r.Cookie(browserCookie)
	if err != nil || !ValidBrowserID(c.Value) {
		return ""
	}
	return c.Value
}

// ensureBrowser returns r's browser id, first setting a cookie with a new
// one when r has none. An existing id is kept, so forms open in two tabs
// both stay valid.
func ensureBrowser(w http.ResponseWriter, r *http.Request) string {
	if id := cookieBrowser(r); id != "" {
		return id
	}
	id := NewBrowserID()
	http.SetCookie(w, &http.Cookie{
		Name: browserCookie, Value: id, Path: "/",
		HttpOnly: true, SameSite: http.SameSiteLaxMode,
		// Secure only over HTTPS (the gateway): natively the app is plain
		// HTTP on loopback, where a Secure cookie would never come back.
		Secure: r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https"),
	})
	return id
}

// clientIP is the address a login attempt is rate limited by: the host of
// r.RemoteAddr, which web.ClientAddr (in main) has set to the client's own
// address when the request came through a trusted proxy.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// writeError maps an error to its response: a problem+json body for the
// JSON API (pg nil), an HTML page for the browser steps. Only 5xx are
// logged. A challenge Hydra already handled sends the browser on to where
// the first answer went.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, pg *pages, err error) {
	var p *web.Problem
	var handled *HandledError
	var limited *RateLimitError
	switch {
	case errors.As(err, &handled) && pg != nil:
		http.Redirect(w, r, handled.RedirectTo, http.StatusSeeOther)
		return
	case errors.As(err, &p):
	case errors.As(err, &limited):
		w.Header().Set("Retry-After", strconv.Itoa(resilience.RetryAfterSeconds(limited.RetryAfter)))
		p = web.NewProblem(http.StatusTooManyRequests, "rate_limited",
			"too many sign-in attempts; wait a minute and try again")
	case errors.Is(err, ErrEmailTaken):
		p = web.NewProblem(http.StatusConflict, "email_taken", "an account with this e-mail address already exists")
	case errors.Is(err, ErrChallengeNotFound), errors.As(err, &handled):
		p = web.NewProblem(http.StatusBadRequest, "invalid_challenge",
			"the sign-in link is invalid or has expired; start again from the application")
	case errors.Is(err, errCSRF):
		p = web.NewProblem(http.StatusForbidden, "csrf_failed",
			"the form has expired or was sent from another browser; start again from the application")
	case errors.Is(err, ErrHydraUnavailable):
		log.WarnContext(r.Context(), "hydra unavailable", "method", r.Method, "path", r.URL.Path, "error", err)
		w.Header().Set("Retry-After", resilience.RetryAfterHeader(err))
		p = web.NewProblem(http.StatusServiceUnavailable, "dependency_unavailable",
			"the sign-in service is unavailable; try again shortly")
	case postgres.IsUnavailable(err):
		log.WarnContext(r.Context(), "database unavailable", "method", r.Method, "path", r.URL.Path, "error", err)
		p = web.Unavailable(w, "database_unavailable", "the database is unavailable; retry shortly", 1)
	default:
		log.ErrorContext(r.Context(), "request failed", "error", err, "method", r.Method, "path", r.URL.Path)
		p = web.NewProblem(http.StatusInternalServerError, "internal", "internal error")
	}
	if pg == nil {
		web.WriteProblem(w, p)
		return
	}
	pg.render(w, p.Status, "message", messagePage{Title: p.Title, Message: p.Detail})
}
