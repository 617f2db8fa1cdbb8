package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// ReadConfig reads the token rules every service shares from the
// environment: AUTH_ISSUER (default Hydra on http://127.0.0.1:4444/),
// AUTH_JWKS_URL (default the issuer's /.well-known/jwks.json),
// AUTH_TOKEN_URL (for services that get tokens themselves; default the
// issuer's /oauth2/token, Hydra's path), AUTH_AUDIENCE (default orderflow)
// and AUTH_CACHE_TTL (default 30s; 0 turns the decision cache off). The
// JWKS and token URLs may name the provider's internal address while the
// issuer is the public one the tokens carry.
func ReadConfig(getenv func(string) string) (Config, error) {
	cfg := Config{
		Issuer:   getenv("AUTH_ISSUER"),
		JWKSURL:  getenv("AUTH_JWKS_URL"),
		TokenURL: getenv("AUTH_TOKEN_URL"),
		Audience: getenv("AUTH_AUDIENCE"),
		CacheTTL: 30 * time.Second,
	}
	if cfg.Issuer == "" {
		cfg.Issuer = "http://127.0.0.1:4444/"
	}
	if cfg.Audience == "" {
		cfg.Audience = "orderflow"
	}
	if cfg.TokenURL == "" {
		cfg.TokenURL = strings.TrimSuffix(cfg.Issuer, "/") + "/oauth2/token"
	}
	var errs []error
	if u, err := url.Parse(cfg.Issuer); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		errs = append(errs, fmt.Errorf("AUTH_ISSUER %q is not an http(s) URL", cfg.Issuer))
	}
	if v := getenv("AUTH_CACHE_TTL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			errs = append(errs, fmt.Errorf("AUTH_CACHE_TTL %q is not a duration >= 0", v))
		}
		cfg.CacheTTL = d
	}
	return cfg, errors.Join(errs...)
}

// ClientTransport returns a RoundTripper that sends base's requests with an
// access token of the client-credentials grant for scopes. The token is
// fetched once and reused until a minute before it expires, by x/oauth2.
func ClientTransport(tokenURL, clientID, secret string, scopes []string, audience string, hc *http.Client, base http.RoundTripper) http.RoundTripper {
	cc := clientcredentials.Config{ClientID: clientID, ClientSecret: secret, TokenURL: tokenURL,
		Scopes: scopes, EndpointParams: url.Values{"audience": {audience}}, AuthStyle: oauth2.AuthStyleInHeader}
	ctx := context.Background()
	if hc != nil {
		ctx = context.WithValue(ctx, oauth2.HTTPClient, hc)
	}
	src := oauth2.ReuseTokenSourceWithExpiry(nil, cc.TokenSource(ctx), time.Minute)
	return &oauth2.Transport{Source: src, Base: base}
}
