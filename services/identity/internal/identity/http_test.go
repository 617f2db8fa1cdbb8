package identity

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/orderflow/orderflow/pkg/web"
)

func TestHandler_SignUp(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 0)
	const ok = `{"email":"Ada@Example.com","password":"correct horse","name":"Ada"}`
	first := f.postJSON(t, "/v1/customers", "application/json", ok)
	if first.status != http.StatusCreated {
		t.Fatalf("POST /v1/customers = %d %s; want 201", first.status, first.body)
	}
	var got map[string]string
	if err := json.Unmarshal([]byte(first.body), &got); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^cus_[a-z2-7]{26}$`).MatchString(got["id"]) {
		t.Errorf("id = %q; want cus_ and 26 base32 characters", got["id"])
	}
	if diff := cmp.Diff(map[string]string{"id": got["id"], "email": "ada@example.com", "name": "Ada"}, got); diff != "" {
		t.Errorf("created customer (-want +got):\n%s", diff)
	}

	tests := []struct {
		name, contentType, body string
		wantStatus              int
		wantCode                string
		wantField               string
	}{
		{"same e-mail in another case", "application/json", `{"email":"ADA@example.com","password":"another one!","name":"Ada 2"}`, 409, "email_taken", ""},
		{"bad e-mail", "application/json", `{"email":"ada@","password":"correct horse","name":"Ada"}`, 400, "validation_failed", "email"},
		{"display-name e-mail", "application/json", `{"email":"Ada <ada2@example.com>","password":"correct horse","name":"Ada"}`, 400, "validation_failed", "email"},
		{"short password", "application/json", `{"email":"ada2@example.com","password":"123456789","name":"Ada"}`, 400, "validation_failed", "password"},
		{"huge password", "application/json", `{"email":"ada2@example.com","password":"` + strings.Repeat("p", 2000) + `","name":"Ada"}`, 400, "validation_failed", "password"},
		{"missing name", "application/json", `{"email":"ada2@example.com","password":"correct horse"}`, 400, "validation_failed", "name"},
		{"unknown field", "application/json", `{"email":"ada2@example.com","password":"correct horse","name":"Ada","admin":true}`, 400, "unknown_field", "admin"},
		{"bad JSON", "application/json", `{"email":`, 400, "bad_json", ""},
		{"wrong type", "application/json", `{"email":1}`, 400, "validation_failed", "email"},
		{"not JSON", "text/plain", ok, 415, "unsupported_media_type", ""},
		{"form", "application/x-www-form-urlencoded", "email=a", 415, "unsupported_media_type", ""},
		{"over 64 KiB", "application/json", `{"name":"` + strings.Repeat("a", web.MaxBodyBytes) + `"}`, 413, "body_too_large", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := f.postJSON(t, "/v1/customers", tt.contentType, tt.body)
			if resp.status != tt.wantStatus || resp.header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("POST /v1/customers = %d %s %s; want %d problem+json", resp.status, resp.header.Get("Content-Type"), resp.body, tt.wantStatus)
			}
			var p struct {
				Code   string            `json:"code"`
				Errors map[string]string `json:"errors"`
			}
			if err := json.Unmarshal([]byte(resp.body), &p); err != nil {
				t.Fatal(err)
			}
			if p.Code != tt.wantCode {
				t.Errorf("code = %q; want %q", p.Code, tt.wantCode)
			}
			if tt.wantField != "" && p.Errors[tt.wantField] == "" {
				t.Errorf("errors = %v; want a problem for %q", p.Errors, tt.wantField)
			}
		})
	}
}

func TestHandler_LoginForm(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 0)
	f.hydra.addLogin("ch-form", LoginRequest{Client: HydraClient{ID: "orderflow-cli", Name: "Orderflow CLI"}})
	f.hydra.addLogin("ch-skip", LoginRequest{Skip: true, Subject: "cus_remembered"})
	b := f.browser(t)

	page := f.get(t, b, "/login?login_challenge=ch-form")
	if page.status != http.StatusOK || !strings.HasPrefix(page.header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /login = %d %s; want 200 HTML", page.status, page.header.Get("Content-Type"))
	}
	for _, want := range []string{`<form method="post" action="/login">`, `name="login_challenge" value="ch-form"`,
		`name="csrf_token" value="`, `name="email"`, `type="password" name="password"`, "Orderflow CLI"} {
		if !strings.Contains(page.body, want) {
			t.Errorf("login page lacks %s:\n%s", want, page.body)
		}
	}
	if csp := page.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy = %q; want default-src 'none'", csp)
	}
	cookie := page.header.Get("Set-Cookie")
	for _, want := range []string{browserCookie + "=", "HttpOnly", "SameSite=Lax", "Path=/"} {
		if !strings.Contains(cookie, want) {
			t.Errorf("Set-Cookie = %q; want it to contain %s", cookie, want)
		}
	}
	if again := f.get(t, b, "/login?login_challenge=ch-form"); again.header.Get("Set-Cookie") != "" {
		t.Error("a second GET /login set a new browser cookie; want the first one kept")
	}

	skip := f.get(t, b, "/login?login_challenge=ch-skip")
	if skip.status != http.StatusFound || skip.header.Get("Location") != "http://hydra.test/oauth2/auth?login_verifier=ch-skip" {
		t.Errorf("GET /login (skip) = %d Location %q; want 302 to Hydra's redirect_to", skip.status, skip.header.Get("Location"))
	}
	if sub, ok := f.hydra.acceptedSubject("ch-skip"); !ok || sub != "cus_remembered" {
		t.Errorf("skip accepted with subject %q, %v; want Hydra's subject cus_remembered", sub, ok)
	}

	for _, path := range []string{"/login", "/login?login_challenge=unknown", "/login?login_challenge=" + strings.Repeat("x", 9000)} {
		resp := f.get(t, b, path)
		if resp.status != http.StatusBadRequest || !strings.HasPrefix(resp.header.Get("Content-Type"), "text/html") {
			t.Errorf("GET %.40s = %d %s; want a 400 HTML page", path, resp.status, resp.header.Get("Content-Type"))
		}
	}
	// A challenge already handled (the back button) goes where the first
	// answer went.
	again := f.get(t, b, "/login?login_challenge=ch-skip")
	if again.status != http.StatusSeeOther || !strings.Contains(again.header.Get("Location"), "already-handled") {
		t.Errorf("GET /login (handled) = %d Location %q; want 303 to Hydra's redirect_to", again.status, again.header.Get("Location"))
	}
}

// loginForm fetches the login page of challenge in browser b and returns
// the form to post.
func (f *fixture) loginForm(t *testing.T, b *http.Client, challenge, email, password string) url.Values {
	t.Helper()
	page := f.get(t, b, "/login?login_challenge="+url.QueryEscape(challenge))
	if page.status != http.StatusOK {
		t.Fatalf("GET /login = %d %s", page.status, page.body)
	}
	return url.Values{
		"login_challenge": {hiddenField(t, page.body, "login_challenge")},
		"csrf_token":      {hiddenField(t, page.body, "csrf_token")},
		"email":           {email}, "password": {password},
	}
}

func TestHandler_Login(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 100)
	id := f.signUp(t, "ada@example.com", "correct horse")
	for _, ch := range []string{"ch-ok", "ch-wrong", "ch-unknown"} {
		f.hydra.addLogin(ch, LoginRequest{Client: HydraClient{ID: "orderflow-cli"}})
	}
	b := f.browser(t)

	wrong := f.postForm(t, b, "/login", f.loginForm(t, b, "ch-wrong", "ada@example.com", "wrong horse!"))
	unknown := f.postForm(t, b, "/login", f.loginForm(t, b, "ch-unknown", "nobody@example.com", "wrong horse!"))
	for name, resp := range map[string]response{"wrong password": wrong, "unknown e-mail": unknown} {
		if resp.status != http.StatusOK || !strings.Contains(resp.body, "wrong e-mail or password") ||
			!strings.Contains(resp.body, `type="password" name="password"`) {
			t.Errorf("%s: POST /login = %d %s; want the form again with the error", name, resp.status, resp.body)
		}
	}
	// The two refusals differ only in the challenge, token and e-mail the
	// page echoes back: nothing tells an unknown account from a known one.
	normalize := func(s, ch, email string) string {
		s = strings.ReplaceAll(s, ch, "CH")
		s = strings.ReplaceAll(s, email, "EMAIL")
		return regexp.MustCompile(`name="csrf_token" value="[^"]*"`).ReplaceAllString(s, "TOKEN")
	}
	if diff := cmp.Diff(normalize(wrong.body, "ch-wrong", "ada@example.com"), normalize(unknown.body, "ch-unknown", "nobody@example.com")); diff != "" {
		t.Errorf("wrong password and unknown e-mail pages differ (-wrong +unknown):\n%s", diff)
	}
	if n := f.hydra.acceptCount(); n != 0 {
		t.Errorf("%d logins accepted at Hydra after wrong credentials; want 0", n)
	}

	ok := f.postForm(t, b, "/login", f.loginForm(t, b, "ch-ok", "  ADA@example.com", "correct horse"))
	if ok.status != http.StatusSeeOther || ok.header.Get("Location") != "http://hydra.test/oauth2/auth?login_verifier=ch-ok" {
		t.Fatalf("POST /login = %d Location %q %s; want 303 to Hydra's redirect_to", ok.status, ok.header.Get("Location"), ok.body)
	}
	if sub, _ := f.hydra.acceptedSubject("ch-ok"); sub != id {
		t.Errorf("accepted subject = %q; want the customer id %q", sub, id)
	}
	if st := f.svc.Stats(); st.Succeeded != 1 || st.Refused != 2 {
		t.Errorf("Stats() = %+v; want 1 succeeded, 2 refused", st)
	}
}

func TestHandler_LoginCSRF(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 100)
	f.signUp(t, "ada@example.com", "correct horse")
	f.hydra.addLogin("ch-victim", LoginRequest{})
	f.hydra.addLogin("ch-other", LoginRequest{})

	victim := f.browser(t)
	good := f.loginForm(t, victim, "ch-victim", "ada@example.com", "correct horse")
	attacker := f.browser(t)
	attackers := f.loginForm(t, attacker, "ch-victim", "ada@example.com", "correct horse")
	otherForm := f.loginForm(t, victim, "ch-other", "ada@example.com", "correct horse")
	with := func(k, v string) url.Values {
		out := url.Values{}
		for key, vs := range good {
			out[key] = vs
		}
		if v == "" {
			out.Del(k)
		} else {
			out.Set(k, v)
		}
		return out
	}

	tests := []struct {
		name    string
		browser *http.Client
		form    url.Values
	}{
		{"no token", victim, with("csrf_token", "")},
		{"forged token", victim, with("csrf_token", strings.Repeat("A", 43))},
		{"another browser's token", victim, with("csrf_token", attackers.Get("csrf_token"))},
		{"another challenge's token", victim, with("csrf_token", otherForm.Get("csrf_token"))},
		{"no cookie", &http.Client{CheckRedirect: victim.CheckRedirect}, good},
		{"the victim's token in another browser", attacker, good},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := f.postForm(t, tt.browser, "/login", tt.form)
			if resp.status != http.StatusForbidden || !strings.HasPrefix(resp.header.Get("Content-Type"), "text/html") {
				t.Errorf("POST /login = %d %s; want a 403 page", resp.status, resp.body)
			}
		})
	}
	if n := f.hydra.acceptCount(); n != 0 {
		t.Errorf("%d logins accepted at Hydra with bad CSRF tokens; want 0", n)
	}
	if resp := f.postForm(t, victim, "/login", good); resp.status != http.StatusSeeOther {
		t.Errorf("POST /login with the right token = %d %s; want 303", resp.status, resp.body)
	}
}

func TestHandler_LoginBadForm(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 0)
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/login", strings.NewReader(`{"email":"a"}`))
	req.Header.Set("Content-Type", "application/json")
	if resp := do(t, f.browser(t), req); resp.status != http.StatusUnsupportedMediaType {
		t.Errorf("POST /login as JSON = %d; want 415", resp.status)
	}
	big := url.Values{"login_challenge": {"x"}, "password": {strings.Repeat("p", web.MaxBodyBytes)}}
	if resp := f.postForm(t, f.browser(t), "/login", big); resp.status != http.StatusRequestEntityTooLarge {
		t.Errorf("POST /login over 64 KiB = %d; want 413", resp.status)
	}
	if resp := f.postForm(t, f.browser(t), "/login", url.Values{"email": {"a"}}); resp.status != http.StatusBadRequest {
		t.Errorf("POST /login without a challenge = %d; want 400", resp.status)
	}
}

func TestHandler_LoginRateLimit(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 2)
	f.signUp(t, "ada@example.com", "correct horse")
	for _, ch := range []string{"ch-1", "ch-2", "ch-3"} {
		f.hydra.addLogin(ch, LoginRequest{})
	}
	b := f.browser(t)
	for _, ch := range []string{"ch-1", "ch-2"} {
		if resp := f.postForm(t, b, "/login", f.loginForm(t, b, ch, "ada@example.com", "wrong horse!")); resp.status != http.StatusOK {
			t.Fatalf("attempt on %s = %d; want 200 (refused, not limited)", ch, resp.status)
		}
	}
	// Over the limit even the right password is not checked.
	resp := f.postForm(t, b, "/login", f.loginForm(t, b, "ch-3", "Ada@Example.com", "correct horse"))
	if resp.status != http.StatusTooManyRequests || resp.header.Get("Retry-After") == "" ||
		!strings.HasPrefix(resp.header.Get("Content-Type"), "text/html") {
		t.Errorf("third attempt = %d Retry-After %q; want a 429 page with Retry-After", resp.status, resp.header.Get("Retry-After"))
	}
	if n := f.hydra.acceptCount(); n != 0 {
		t.Errorf("%d logins accepted over the rate limit; want 0", n)
	}
	if st := f.svc.Stats(); st.Limited != 1 {
		t.Errorf("Stats().Limited = %d; want 1", st.Limited)
	}
}

func TestHandler_Consent(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 0)
	scope, aud := []string{"openid", "orders"}, []string{"orderflow"}
	f.hydra.addConsent("c-first-party", ConsentRequest{Client: HydraClient{ID: "orderflow-cli", SkipConsent: true},
		RequestedScope: scope, RequestedAudience: aud})
	f.hydra.addConsent("c-remembered", ConsentRequest{Skip: true, RequestedScope: scope})
	for _, ch := range []string{"c-allow", "c-deny", "c-forged"} {
		f.hydra.addConsent(ch, ConsentRequest{Client: HydraClient{ID: "third", Name: "Third Party"},
			RequestedScope: scope, RequestedAudience: aud})
	}
	b := f.browser(t)

	skipped := f.get(t, b, "/consent?consent_challenge=c-first-party")
	if skipped.status != http.StatusFound || skipped.header.Get("Location") != "http://hydra.test/oauth2/auth?consent_verifier=c-first-party" {
		t.Errorf("GET /consent (skip_consent) = %d Location %q; want 302 to redirect_to", skipped.status, skipped.header.Get("Location"))
	}
	if resp := f.get(t, b, "/consent?consent_challenge=c-remembered"); resp.status != http.StatusFound {
		t.Errorf("GET /consent (skip) = %d; want 302", resp.status)
	}
	// A client registered with the admin scope gets only what a customer may grant.
	f.hydra.addConsent("c-greedy", ConsentRequest{Client: HydraClient{ID: "greedy", SkipConsent: true},
		RequestedScope: []string{"openid", "orders", "orderflow.admin", "payments"}, RequestedAudience: aud})
	if resp := f.get(t, b, "/consent?consent_challenge=c-greedy"); resp.status != http.StatusFound {
		t.Errorf("GET /consent (greedy client) = %d; want 302", resp.status)
	}
	f.hydra.mu.Lock()
	greedy := f.hydra.granted["c-greedy"]
	f.hydra.mu.Unlock()
	if got := strings.Join(greedy[0], " "); got != "openid orders" {
		t.Errorf("scopes granted to a client asking for orderflow.admin = %q; want %q", got, "openid orders")
	}

	form := func(ch string) url.Values {
		page := f.get(t, b, "/consent?consent_challenge="+ch)
		if page.status != http.StatusOK || !strings.Contains(page.body, "Third Party") || !strings.Contains(page.body, "<li>orders</li>") {
			t.Fatalf("GET /consent = %d %s; want the consent form", page.status, page.body)
		}
		return url.Values{"consent_challenge": {ch}, "csrf_token": {hiddenField(t, page.body, "csrf_token")}}
	}
	allow := form("c-allow")
	allow.Set("decision", "allow")
	if resp := f.postForm(t, b, "/consent", allow); resp.status != http.StatusSeeOther {
		t.Errorf("POST /consent allow = %d %s; want 303", resp.status, resp.body)
	}
	deny := form("c-deny")
	deny.Set("decision", "deny")
	if resp := f.postForm(t, b, "/consent", deny); resp.status != http.StatusSeeOther ||
		resp.header.Get("Location") != "http://client.test/callback?error=access_denied" {
		t.Errorf("POST /consent deny = %d Location %q; want 303 back with access_denied", resp.status, resp.header.Get("Location"))
	}
	forged := form("c-forged")
	forged.Set("decision", "allow")
	forged.Set("csrf_token", f.hydra.srv.URL) // anything but the token
	if resp := f.postForm(t, b, "/consent", forged); resp.status != http.StatusForbidden {
		t.Errorf("POST /consent with a forged token = %d; want 403", resp.status)
	}
	// A login form's token is no good for the consent form.
	f.hydra.addLogin("c-forged", LoginRequest{})
	loginPage := f.get(t, b, "/login?login_challenge=c-forged")
	forged.Set("csrf_token", hiddenField(t, loginPage.body, "csrf_token"))
	if resp := f.postForm(t, b, "/consent", forged); resp.status != http.StatusForbidden {
		t.Errorf("POST /consent with the login form's token = %d; want 403", resp.status)
	}

	f.hydra.mu.Lock()
	defer f.hydra.mu.Unlock()
	want := map[string][2][]string{"c-first-party": {scope, aud}, "c-remembered": {scope, {}}, "c-allow": {scope, aud}, "c-greedy": {scope, aud}}
	if diff := cmp.Diff(want, f.hydra.granted); diff != "" {
		t.Errorf("grants at Hydra (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"c-deny": "access_denied"}, f.hydra.rejected); diff != "" {
		t.Errorf("rejections at Hydra (-want +got):\n%s", diff)
	}
}

func TestHandler_HydraDown(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 0)
	f.hydra.srv.Close()
	resp := f.get(t, f.browser(t), "/login?login_challenge=anything")
	if resp.status != http.StatusServiceUnavailable || resp.header.Get("Retry-After") == "" ||
		!strings.HasPrefix(resp.header.Get("Content-Type"), "text/html") {
		t.Errorf("GET /login with Hydra down = %d Retry-After %q; want a 503 page with Retry-After", resp.status, resp.header.Get("Retry-After"))
	}
	if ready := f.get(t, http.DefaultClient, "/readyz"); ready.status != http.StatusServiceUnavailable || !strings.Contains(ready.body, "hydra") {
		t.Errorf("GET /readyz with Hydra down = %d %s; want 503 naming hydra", ready.status, ready.body)
	}
}
