// Package login runs the OAuth 2.0 authorization code flow with PKCE (S256)
// against Orderflow's Ory Hydra and identity login app without a browser:
// it follows the redirects a browser would, fills in the login form with an
// e-mail and password, catches the redirect to the client's callback and
// exchanges the code for tokens. It is the library behind tools/token and
// the tests that need a customer's access token.
package login

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/oauth2"
)

// Config names the issuer and the client the flow runs for. A zero field
// takes the default of Orderflow's first-party client orderflow-cli.
type Config struct {
	// Issuer is the OpenID Connect issuer URL (http://127.0.0.1:4444/).
	Issuer string
	// ClientID is the public client (orderflow-cli).
	ClientID string
	// RedirectURL is the client's registered redirect URI
	// (http://127.0.0.1:8484/callback). Nothing listens there: the flow
	// stops at the redirect and reads the code from its URL.
	RedirectURL string
	// Scopes are asked for (openid offline_access orders).
	Scopes []string
	// Audience is the access token audience asked for (orderflow).
	Audience string
}

// Defaults of Config.
const (
	DefaultIssuer      = "http://127.0.0.1:4444/"
	DefaultClientID    = "orderflow-cli"
	DefaultRedirectURL = "http://127.0.0.1:8484/callback"
	DefaultScope       = "openid offline_access orders"
	DefaultAudience    = "orderflow"
)

// ErrLoginRefused means the login app re-rendered its form: the e-mail or
// the password is wrong.
var ErrLoginRefused = errors.New("login refused: wrong e-mail or password")

// maxRedirects bounds the browser-like walk from /oauth2/auth to the callback.
const maxRedirects = 15

// maxPage caps what is read of one HTML page.
const maxPage = 1 << 20

func (c Config) withDefaults() Config {
	if c.Issuer == "" {
		c.Issuer = DefaultIssuer
	}
	if c.ClientID == "" {
		c.ClientID = DefaultClientID
	}
	if c.RedirectURL == "" {
		c.RedirectURL = DefaultRedirectURL
	}
	if len(c.Scopes) == 0 {
		c.Scopes = strings.Fields(DefaultScope)
	}
	if c.Audience == "" {
		c.Audience = DefaultAudience
	}
	return c
}

// Login signs in as email with password and returns the tokens. hc carries
// the transport (a custom CA, a timeout) and may be nil; it is not changed:
// the flow uses its own cookie jar and redirect policy on a copy of it.
func Login(ctx context.Context, hc *http.Client, cfg Config, email, password string) (*oauth2.Token, error) {
	cfg = cfg.withDefaults()
	if hc == nil {
		hc = http.DefaultClient
	}
	endpoint, err := discover(ctx, hc, cfg.Issuer)
	if err != nil {
		return nil, err
	}
	conf := &oauth2.Config{
		ClientID:    cfg.ClientID,
		Endpoint:    endpoint,
		RedirectURL: cfg.RedirectURL,
		Scopes:      cfg.Scopes,
	}
	verifier := oauth2.GenerateVerifier()
	state := randomState()
	authURL := conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("audience", cfg.Audience))

	browser, err := newBrowser(hc, cfg.RedirectURL)
	if err != nil {
		return nil, err
	}
	resp, err := browser.get(ctx, authURL)
	if err != nil {
		return nil, err
	}
	if resp.callback == nil {
		form, err := loginFormOf(resp)
		if err != nil {
			return nil, err
		}
		form.fields.Set("email", email)
		form.fields.Set("password", password)
		if resp, err = browser.post(ctx, form.action, form.fields); err != nil {
			return nil, err
		}
		if resp.callback == nil {
			if _, err := loginFormOf(resp); err == nil {
				return nil, ErrLoginRefused
			}
			return nil, fmt.Errorf("login: %s answered %d instead of redirecting to %s: %s",
				resp.url, resp.status, cfg.RedirectURL, snippet(resp.body))
		}
	}
	code, err := codeOf(resp.callback, state)
	if err != nil {
		return nil, err
	}
	// The token request goes through the caller's client (transport,
	// timeout), not the browser's redirect policy.
	tok, err := conf.Exchange(context.WithValue(ctx, oauth2.HTTPClient, hc), code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, fmt.Errorf("exchange code: %w", err)
	}
	return tok, nil
}

// discover reads the issuer's endpoints from its OpenID Connect discovery
// document, and checks the document is the issuer's.
func discover(ctx context.Context, hc *http.Client, issuer string) (oauth2.Endpoint, error) {
	u := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return oauth2.Endpoint{}, fmt.Errorf("discovery: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return oauth2.Endpoint{}, fmt.Errorf("discovery: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return oauth2.Endpoint{}, fmt.Errorf("discovery: GET %s answered %d", u, resp.StatusCode)
	}
	var doc struct {
		Issuer        string `json:"issuer"`
		AuthEndpoint  string `json:"authorization_endpoint"`
		TokenEndpoint string `json:"token_endpoint"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxPage)).Decode(&doc); err != nil {
		return oauth2.Endpoint{}, fmt.Errorf("discovery: decode %s: %w", u, err)
	}
	if strings.TrimSuffix(doc.Issuer, "/") != strings.TrimSuffix(issuer, "/") {
		return oauth2.Endpoint{}, fmt.Errorf("discovery: %s names issuer %q, not %q", u, doc.Issuer, issuer)
	}
	if doc.AuthEndpoint == "" || doc.TokenEndpoint == "" {
		return oauth2.Endpoint{}, fmt.Errorf("discovery: %s lacks authorization_endpoint or token_endpoint", u)
	}
	// A public client sends its id in the form, never in a Basic header.
	return oauth2.Endpoint{AuthURL: doc.AuthEndpoint, TokenURL: doc.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams}, nil
}

// browser is an http.Client with cookies that follows redirects until one
// points at the client's redirect URL.
type browser struct {
	hc          *http.Client
	redirectURL string
}

// page is where a browser request ended: a redirect to the callback, or
// another answer with its body.
type page struct {
	callback *url.URL // set when the walk reached the redirect URL
	url      *url.URL
	status   int
	header   http.Header
	body     []byte
}

func newBrowser(hc *http.Client, redirectURL string) (*browser, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, err
	}
	c := *hc
	c.Jar = jar
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), redirectURL) {
			return http.ErrUseLastResponse
		}
		if len(via) >= maxRedirects {
			return fmt.Errorf("stopped after %d redirects", maxRedirects)
		}
		return nil
	}
	return &browser{hc: &c, redirectURL: redirectURL}, nil
}

func (b *browser) get(ctx context.Context, u string) (*page, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	return b.do(req)
}

func (b *browser) post(ctx context.Context, u string, form url.Values) (*page, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

func (b *browser) do(req *http.Request) (*page, error) {
	resp, err := b.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPage))
	if err != nil {
		return nil, fmt.Errorf("login: read %s: %w", resp.Request.URL, err)
	}
	p := &page{url: resp.Request.URL, status: resp.StatusCode, header: resp.Header, body: body}
	// CheckRedirect stopped at the redirect URL: this is the redirect.
	if loc := resp.Header.Get("Location"); resp.StatusCode >= 300 && resp.StatusCode < 400 && loc != "" {
		cb, err := resp.Request.URL.Parse(loc)
		if err != nil {
			return nil, fmt.Errorf("login: bad redirect %q: %w", loc, err)
		}
		if strings.HasPrefix(cb.String(), b.redirectURL) {
			p.callback = cb
		}
	}
	return p, nil
}

// codeOf takes the authorization code from the callback URL, after
// checking its state; an error parameter there is returned as an error.
func codeOf(callback *url.URL, state string) (string, error) {
	q := callback.Query()
	if e := q.Get("error"); e != "" {
		return "", fmt.Errorf("authorization refused: %s: %s", e, q.Get("error_description"))
	}
	if q.Get("state") != state {
		return "", errors.New("authorization: the callback's state does not match the request's")
	}
	code := q.Get("code")
	if code == "" {
		return "", errors.New("authorization: the callback carries no code")
	}
	return code, nil
}

// loginForm is the login page's form: where it posts, and its fields
// (the hidden ones filled in, the visible ones as the page set them).
type loginForm struct {
	action string
	fields url.Values
}

// loginFormOf finds the login form in an HTML page.
func loginFormOf(p *page) (*loginForm, error) {
	if p.status != http.StatusOK || !strings.HasPrefix(p.header.Get("Content-Type"), "text/html") {
		return nil, fmt.Errorf("login: %s answered %d %s, not the login form: %s",
			p.url, p.status, p.header.Get("Content-Type"), snippet(p.body))
	}
	return parseLoginForm(bytes.NewReader(p.body), p.url)
}

// parseLoginForm returns the first form of the page that has a password
// input, with its action resolved against base and the values of its
// inputs.
func parseLoginForm(r io.Reader, base *url.URL) (*loginForm, error) {
	doc, err := html.Parse(r)
	if err != nil {
		return nil, fmt.Errorf("login: parse page: %w", err)
	}
	for form := range doc.Descendants() {
		if form.Type != html.ElementNode || form.Data != "form" {
			continue
		}
		fields := url.Values{}
		hasPassword := false
		for in := range form.Descendants() {
			if in.Type != html.ElementNode || in.Data != "input" {
				continue
			}
			name := attr(in, "name")
			if strings.EqualFold(attr(in, "type"), "password") {
				hasPassword = true
			}
			if name != "" {
				fields.Set(name, attr(in, "value"))
			}
		}
		if !hasPassword {
			continue
		}
		action, err := base.Parse(attr(form, "action"))
		if err != nil {
			return nil, fmt.Errorf("login: bad form action: %w", err)
		}
		return &loginForm{action: action.String(), fields: fields}, nil
	}
	return nil, errors.New("login: the page has no login form")
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Namespace == "" && strings.EqualFold(a.Key, key) {
			return a.Val
		}
	}
	return ""
}

// randomState returns 128 random bits for the state parameter.
func randomState() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// snippet is the start of a body, for an error message.
func snippet(b []byte) string {
	const n = 200
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}
