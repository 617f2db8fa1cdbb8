// Package auth authenticates the callers of Orderflow's services by their
// OAuth 2.0 access tokens and authorises them by scope.
//
// Access tokens are JWTs issued by the OpenID Connect provider (Ory Hydra
// here; any provider that publishes a JWKS works, so swapping it is
// configuration). A Verifier checks each token locally, with
// github.com/coreos/go-oidc/v3: the signature against the issuer's JWKS
// (keys.go: fetched once, cached, fetched again when a token names an
// unknown key id or the set is an hour old, at most every 10 s), the
// algorithm (RS256 only: no "none", no HMAC with a public key), the
// issuer, the audience and the expiry. Nobody calls the provider per
// request. A verified token's decision is cached for a short time, so a
// client that sends the same token many times pays for the signature once.
//
// In a service's routes:
//
//	r.Use(verifier.Authenticate)                        // who is calling (optional)
//	r.With(auth.Require("payments")).Post("/v1/payments", …) // who may call this
//
// Which resource a caller may touch (a customer sees only their own orders)
// is decided in the use case, from the Principal in the context.
package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/orderflow/orderflow/pkg/web"
)

// Scopes the services know.
const (
	ScopeOrders       = "orders"                 // a customer's own orders, invoices and e-mails
	ScopeReservations = "inventory.reservations" // inventory's reservation routes
	ScopePayments     = "payments"               // every payment route
	ScopeAdmin        = "orderflow.admin"        // admin routes; reads anything
)

// Principal is an authenticated caller.
type Principal struct {
	// Subject is the token's sub: a customer id ("cus_…") for a person, the
	// client id for a service or an operator (client credentials).
	Subject  string
	ClientID string
	Scopes   []string
}

// Has reports whether the caller was granted scope.
func (p Principal) Has(scope string) bool { return slices.Contains(p.Scopes, scope) }

// IsAdmin reports whether the caller holds the admin scope.
func (p Principal) IsAdmin() bool { return p.Has(ScopeAdmin) }

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the caller that Authenticate verified, if any.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// Config says which tokens a Verifier accepts.
type Config struct {
	Issuer   string // exactly the iss claim, e.g. "http://127.0.0.1:4444/"
	JWKSURL  string // the issuer's keys; empty: Issuer + ".well-known/jwks.json"
	Audience string // must be in aud, e.g. "orderflow"
	// TokenURL is the provider's token endpoint, for the client-credentials
	// grant of a service that calls others (the discovery document's
	// token_endpoint; Hydra's is the issuer + "oauth2/token").
	TokenURL string
	// CacheTTL bounds how long a verified token's decision is reused
	// (never past the token's expiry); 0 turns the cache off.
	CacheTTL time.Duration
	// CacheSize bounds the cache's entries (default 10,000).
	CacheSize int
}

// ErrInvalidToken is returned for every token that does not verify.
var ErrInvalidToken = errors.New("invalid token")

// Verifier checks access tokens. It is safe for concurrent use; build one
// per process.
type Verifier struct {
	v     *oidc.IDTokenVerifier
	cfg   Config
	log   *slog.Logger
	now   func() time.Time
	mu    sync.RWMutex
	cache map[string]cached
}

type cached struct {
	p       Principal
	expires time.Time
}

// NewVerifier returns a Verifier for cfg. The JWKS is fetched with hc (nil:
// http.DefaultClient) on first use, not here, so a service starts while its
// provider is still starting.
func NewVerifier(cfg Config, hc *http.Client, log *slog.Logger) (*Verifier, error) {
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("auth: the issuer and the audience are required")
	}
	if cfg.JWKSURL == "" {
		cfg.JWKSURL = strings.TrimSuffix(cfg.Issuer, "/") + "/.well-known/jwks.json"
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 10_000
	}
	return &Verifier{
		v: oidc.NewVerifier(cfg.Issuer, newKeySet(cfg.JWKSURL, hc), &oidc.Config{
			ClientID:             cfg.Audience,
			SupportedSigningAlgs: []string{oidc.RS256},
		}),
		cfg: cfg, log: log, now: time.Now, cache: map[string]cached{},
	}, nil
}

// claims are the access token's claims that matter here. Hydra puts the
// scopes in "scp"; Auth0, Keycloak and Cognito in a space-separated
// "scope": both are read.
type claims struct {
	ClientID string   `json:"client_id"`
	Scp      []string `json:"scp"`
	Scope    string   `json:"scope"`
}

// Verify checks raw and returns its caller. Every failure wraps
// ErrInvalidToken.
func (v *Verifier) Verify(ctx context.Context, raw string) (Principal, error) {
	now := v.now()
	if v.cfg.CacheTTL > 0 {
		v.mu.RLock()
		c, ok := v.cache[raw]
		v.mu.RUnlock()
		if ok && now.Before(c.expires) {
			return c.p, nil
		}
	}
	tok, err := v.v.Verify(ctx, raw)
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	var c claims
	if err := tok.Claims(&c); err != nil {
		return Principal{}, fmt.Errorf("%w: claims: %w", ErrInvalidToken, err)
	}
	if tok.Subject == "" {
		return Principal{}, fmt.Errorf("%w: no subject", ErrInvalidToken)
	}
	p := Principal{Subject: tok.Subject, ClientID: c.ClientID, Scopes: c.Scp}
	if len(p.Scopes) == 0 && c.Scope != "" {
		p.Scopes = strings.Fields(c.Scope)
	}
	if v.cfg.CacheTTL > 0 {
		expires := now.Add(v.cfg.CacheTTL)
		if tok.Expiry.Before(expires) {
			expires = tok.Expiry
		}
		v.remember(raw, p, expires, now)
	}
	return p, nil
}

// remember caches a decision. A full cache first drops what has expired,
// then, if still full, everything: simple, bounded, and a miss costs only
// one signature check.
func (v *Verifier) remember(raw string, p Principal, expires, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.cache) >= v.cfg.CacheSize {
		for k, c := range v.cache {
			if !now.Before(c.expires) {
				delete(v.cache, k)
			}
		}
		if len(v.cache) >= v.cfg.CacheSize {
			clear(v.cache)
		}
	}
	v.cache[raw] = cached{p: p, expires: expires}
}

// maxTokenBytes bounds what is parsed: Hydra's tokens are about 1 KB.
const maxTokenBytes = 8 << 10

// Authenticate verifies the bearer token of a request that has one and puts
// its Principal in the context; a request without a token passes on
// anonymous (Require refuses it where a route needs a caller). A token that
// does not verify is refused with 401 wherever it is sent.
func (v *Verifier) Authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		if h == "" {
			next.ServeHTTP(w, r)
			return
		}
		scheme, raw, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || raw == "" || len(raw) > maxTokenBytes {
			refuse(w, "invalid_token", "the Authorization header must be: Bearer <access token>")
			return
		}
		p, err := v.Verify(r.Context(), strings.TrimSpace(raw))
		if err != nil {
			if v.log != nil {
				v.log.DebugContext(r.Context(), "token refused", "error", err)
			}
			refuse(w, "invalid_token", "the access token is not valid (expired, malformed, not signed by the issuer, or for another audience)")
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

// Require lets a request through only when its caller holds one of scopes:
// no caller → 401, a caller without the scope → 403 insufficient_scope.
func Require(scopes ...string) func(http.Handler) http.Handler {
	want := strings.Join(scopes, " ")
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, ok := FromContext(r.Context())
			if !ok {
				refuse(w, "", "this call needs an access token: Authorization: Bearer <token>")
				return
			}
			if !slices.ContainsFunc(scopes, p.Has) {
				w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope", scope="`+want+`"`)
				web.WriteProblem(w, web.NewProblem(http.StatusForbidden, "insufficient_scope",
					"this call needs a token with scope "+strings.Join(scopes, " or ")))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// refuse answers 401 with the RFC 6750 challenge; errCode is empty when no
// token was sent.
func refuse(w http.ResponseWriter, errCode, detail string) {
	challenge := `Bearer realm="orderflow"`
	if errCode != "" {
		challenge += `, error="` + errCode + `"`
	}
	w.Header().Set("WWW-Authenticate", challenge)
	web.WriteProblem(w, web.NewProblem(http.StatusUnauthorized, "unauthorized", detail))
}
