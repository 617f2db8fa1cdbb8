package main

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/orderflow/orderflow/pkg/auth"
	"github.com/orderflow/orderflow/pkg/authtest"
	"github.com/orderflow/orderflow/pkg/dbtest"
	"github.com/orderflow/orderflow/tools/token/login"
)

// TestHydraFlow runs the whole sign-in against a real Ory Hydra, then
// tools/token's flow signs a new customer in, and the access token is
// verified as the other services verify it. Hydra must be told the login
// and consent URLs before the service, which needs Hydra's admin URL,
// starts: a proxy holds that address meanwhile and forwards to the service
// once it listens.
func TestHydraFlow(t *testing.T) {
	t.Parallel()
	var target atomic.Pointer[url.URL]
	front := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target.Load())
		r.Out.Host = r.In.Host
	}})
	t.Cleanup(front.Close)
	hydra := authtest.Start(t, authtest.Options{LoginURL: front.URL + "/login", ConsentURL: front.URL + "/consent"})
	svcURL := startRun(t, map[string]string{
		"IDENTITY_DATABASE_URL":    dbtest.NewURL(t, nil),
		"IDENTITY_HYDRA_ADMIN_URL": hydra.AdminURL,
		"IDENTITY_CSRF_KEY":        testCSRFKey,
		// Every test on this machine signs in from 127.0.0.1.
		"IDENTITY_LOGIN_RATE": "1000",
		"OTEL_SDK_DISABLED":   "true",
	})
	u, err := url.Parse(svcURL)
	if err != nil {
		t.Fatal(err)
	}
	target.Store(u)
	base := front.URL
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hc := &http.Client{Timeout: 20 * time.Second}

	const email, password = "flow@example.com", "correct horse battery"
	resp, err := http.Post(base+"/v1/customers", "application/json",
		strings.NewReader(fmt.Sprintf(`{"email":%q,"password":%q,"name":"Flow"}`, email, password)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	id := regexp.MustCompile(`"id":"(cus_[a-z2-7]{26})"`).FindStringSubmatch(string(body))
	if resp.StatusCode != http.StatusCreated || id == nil {
		t.Fatalf("POST /v1/customers = %d %s; want 201 with an id", resp.StatusCode, body)
	}

	cfg := login.Config{Issuer: hydra.Issuer}
	t.Run("right password", func(t *testing.T) {
		tok, err := login.Login(ctx, hc, cfg, "Flow@Example.com", password)
		if err != nil {
			t.Fatalf("Login = %v", err)
		}
		if tok.RefreshToken == "" {
			t.Error("no refresh token; want one for offline_access")
		}
		v, err := auth.NewVerifier(auth.Config{Issuer: hydra.Issuer, Audience: "orderflow"}, hc, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		// Verify checks the signature against Hydra's JWKS, the issuer,
		// the expiry and that aud contains orderflow.
		p, err := v.Verify(ctx, tok.AccessToken)
		if err != nil {
			t.Fatalf("Verify(access token) = %v", err)
		}
		if p.Subject != id[1] || p.ClientID != "orderflow-cli" || !slices.Contains(p.Scopes, "orders") {
			t.Errorf("access token sub=%q client=%q scp=%v; want sub %s, orderflow-cli, scp with orders",
				p.Subject, p.ClientID, p.Scopes, id[1])
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		if tok, err := login.Login(ctx, hc, cfg, email, "wrong horse battery"); !errors.Is(err, login.ErrLoginRefused) || tok != nil {
			t.Errorf("Login(wrong password) = %v, %v; want ErrLoginRefused and no token", tok, err)
		}
		if _, err := login.Login(ctx, hc, cfg, "nobody@example.com", password); !errors.Is(err, login.ErrLoginRefused) {
			t.Errorf("Login(unknown e-mail) = %v; want ErrLoginRefused", err)
		}
	})

	t.Run("wrong CSRF token", func(t *testing.T) {
		b := newBrowser(t)
		form := b.startAuthorization(ctx, t, hydra, "orderflow-cli")
		form.Set("email", email)
		form.Set("password", password)
		forged := url.Values{}
		for k, v := range form {
			forged[k] = v
		}
		forged.Set("csrf_token", strings.Repeat("A", 43))
		if st, loc, _ := b.post(ctx, t, base+"/login", forged); st != http.StatusForbidden {
			t.Errorf("POST /login with a forged token = %d (Location %q); want 403", st, loc)
		}
		// The same form from a browser without the cookie is refused too.
		other := newBrowser(t)
		if st, _, _ := other.post(ctx, t, base+"/login", form); st != http.StatusForbidden {
			t.Errorf("POST /login from another browser = %d; want 403", st)
		}
		// Hydra accepted nothing: the challenge is still open.
		if st, _, _ := b.get(ctx, t, base+"/login?login_challenge="+url.QueryEscape(form.Get("login_challenge"))); st != http.StatusOK {
			t.Errorf("GET /login after the refusals = %d; want the form again (challenge not yet handled)", st)
		}
	})

	t.Run("consent of a third-party client", func(t *testing.T) {
		const client = "identity-test-third-party"
		err := hydra.CreateClient(ctx, map[string]any{
			"client_id": client, "token_endpoint_auth_method": "none",
			"grant_types": []string{"authorization_code"}, "response_types": []string{"code"},
			"redirect_uris": []string{login.DefaultRedirectURL}, "scope": "openid orders", "audience": []string{"orderflow"},
		})
		if err != nil {
			t.Fatal(err)
		}
		b := newBrowser(t)
		form := b.startAuthorization(ctx, t, hydra, client)
		form.Set("email", email)
		form.Set("password", password)
		st, _, page := b.post(ctx, t, base+"/login", form)
		if st != http.StatusOK || !strings.Contains(page, `action="/consent"`) || !strings.Contains(page, "<li>orders</li>") {
			t.Fatalf("after login = %d; want the consent form:\n%s", st, page)
		}
		consent := url.Values{
			"consent_challenge": {hidden(t, page, "consent_challenge")},
			"csrf_token":        {hidden(t, page, "csrf_token")},
			"decision":          {"deny"},
		}
		st, loc, _ := b.post(ctx, t, base+"/consent", consent)
		if st != http.StatusFound && st != http.StatusSeeOther || !strings.HasPrefix(loc, login.DefaultRedirectURL) ||
			!strings.Contains(loc, "error=access_denied") {
			t.Errorf("deny = %d Location %q; want a redirect to the callback with error=access_denied", st, loc)
		}
	})
}

// testBrowser walks the flow step by step with a cookie jar, stopping at
// every redirect to the callback.
type testBrowser struct {
	hc *http.Client
}

func newBrowser(t *testing.T) *testBrowser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &testBrowser{hc: &http.Client{Jar: jar, Timeout: 20 * time.Second,
		CheckRedirect: func(req *http.Request, _ []*http.Request) error {
			if strings.HasPrefix(req.URL.String(), login.DefaultRedirectURL) {
				return http.ErrUseLastResponse
			}
			return nil
		}}}
}

func (b *testBrowser) do(t *testing.T, req *http.Request) (int, string, string) {
	t.Helper()
	resp, err := b.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(body)
}

func (b *testBrowser) get(ctx context.Context, t *testing.T, u string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b.do(t, req)
}

func (b *testBrowser) post(ctx context.Context, t *testing.T, u string, form url.Values) (int, string, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(t, req)
}

// startAuthorization opens Hydra's authorization URL for client and
// returns the hidden fields of the login form it leads to.
func (b *testBrowser) startAuthorization(ctx context.Context, t *testing.T, hydra *authtest.Hydra, client string) url.Values {
	t.Helper()
	conf := oauth2.Config{ClientID: client, RedirectURL: login.DefaultRedirectURL, Scopes: []string{"openid", "orders"},
		Endpoint: oauth2.Endpoint{AuthURL: hydra.PublicURL + "oauth2/auth"}}
	verifier := oauth2.GenerateVerifier()
	st, _, page := b.get(ctx, t, conf.AuthCodeURL("state-of-the-test", oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("audience", "orderflow")))
	if st != http.StatusOK {
		t.Fatalf("authorization = %d; want the login form:\n%s", st, page)
	}
	return url.Values{
		"login_challenge": {hidden(t, page, "login_challenge")},
		"csrf_token":      {hidden(t, page, "csrf_token")},
	}
}

// hidden returns the (unescaped) value of the named input of a page.
func hidden(t *testing.T, page, name string) string {
	t.Helper()
	m := regexp.MustCompile(`name="` + regexp.QuoteMeta(name) + `" value="([^"]*)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("the page has no %s field:\n%s", name, page)
	}
	return html.UnescapeString(m[1])
}
