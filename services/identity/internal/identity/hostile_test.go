package identity

import (
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/orderflow/orderflow/pkg/web"
	"github.com/orderflow/orderflow/pkg/web/webtest"
)

// TestHostile drives every route of NewHandler with generated hostile
// values in the JSON sign-up, the login and consent links and their forms
// (valid challenge, CSRF token and browser cookie around the hostile part,
// so it reaches the use cases, Redis, the database and the Hydra client): no
// answer may be a 5xx, every 4xx is a problem or, for the browser steps, an
// HTML page. HOSTILE_SEED repeats a run, HOSTILE_N sets the requests per
// route.
func TestHostile(t *testing.T) {
	t.Parallel()
	// A limit high enough that hostile attempts reach the password check,
	// with its Redis keys counted on the way.
	f := newFixture(t, 1_000_000)
	svc, hydra, csrf := f.svc, f.hydra, f.csrf

	in, problems := SignUp{Email: "ada@example.com", Password: "correct horse", Name: "Ada"}.Normalize()
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	if _, err := svc.SignUp(t.Context(), "192.0.2.250", in); err != nil {
		t.Fatal(err)
	}
	const loginCh, consentCh = "login-challenge-1", "consent-challenge-1"
	hydra.addLogin(loginCh, LoginRequest{Client: HydraClient{ID: "orderflow-cli", Name: "Orderflow CLI"}})
	hydra.addConsent(consentCh, ConsentRequest{Client: HydraClient{ID: "third", Name: "Third Party"},
		RequestedScope: []string{"openid", "orders"}, RequestedAudience: []string{"orderflow"}})
	browser := NewBrowserID()
	cookie := browserCookie + "=" + browser
	// The login form's password is wrong, so every attempt goes through
	// the whole check and the challenge stays open for the next one.
	login := url.Values{"login_challenge": {loginCh}, "csrf_token": {csrf.Token(PurposeLogin, loginCh, browser)},
		"email": {"ada@example.com"}, "password": {"wrong horse battery"}}
	consent := url.Values{"consent_challenge": {consentCh}, "csrf_token": {csrf.Token(PurposeConsent, consentCh, browser)},
		"decision": {"deny"}}

	webtest.Run(t, f.h, webtest.Config{
		Wrap: web.ClientAddr([]netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}),
		Routes: []webtest.Route{
			{Method: "GET", Pattern: "/healthz"},
			{Method: "GET", Pattern: "/readyz"},
			{Method: "POST", Pattern: "/v1/customers",
				Body: `{"email":"$unique@example.com","password":"correct horse","name":"Ada Lovelace"}`},
			{Method: "GET", Pattern: "/login", HTML: true, Query: map[string]string{"login_challenge": loginCh},
				Header: map[string]string{"Cookie": cookie}},
			{Method: "POST", Pattern: "/login", HTML: true, Form: true, Body: login.Encode(),
				Header: map[string]string{"Cookie": cookie}},
			{Method: "GET", Pattern: "/consent", HTML: true, Query: map[string]string{"consent_challenge": consentCh},
				Header: map[string]string{"Cookie": cookie}},
			{Method: "POST", Pattern: "/consent", HTML: true, Form: true, Body: consent.Encode(),
				Header: map[string]string{"Cookie": cookie}},
		},
	})
}

// TestHostile_Found pins the input TestHostile found answered with a 500: a
// login e-mail holding a NUL reached PostgreSQL. It is a 400 with the form
// again now, and nothing is accepted at Hydra.
func TestHostile_Found(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 100)
	f.signUp(t, "ada@example.com", "correct horse")
	b := f.browser(t)
	for i, email := range []string{"\x00", "ada@example.com\x00", "\x1b[2J@example.com", "ada\xff@example.com"} {
		ch := "ch-hostile-" + strconv.Itoa(i)
		f.hydra.addLogin(ch, LoginRequest{Client: HydraClient{ID: "orderflow-cli"}})
		resp := f.postForm(t, b, "/login", f.loginForm(t, b, ch, email, "correct horse"))
		if resp.status != http.StatusBadRequest || !strings.Contains(resp.body, notAnEmail) ||
			!strings.Contains(resp.body, `type="password" name="password"`) {
			t.Errorf("POST /login with e-mail %q = %d %s; want 400 and the form again", email, resp.status, resp.body)
		}
	}
	if n := f.hydra.acceptCount(); n != 0 {
		t.Errorf("%d logins accepted at Hydra; want 0", n)
	}
}
