package login

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseLoginForm(t *testing.T) {
	t.Parallel()
	base, _ := url.Parse("https://gateway.test:8443/login?login_challenge=abc")
	tests := []struct {
		name       string
		page       string
		wantAction string
		wantFields url.Values
		wantErr    bool
	}{
		{
			name: "identity's login page",
			page: `<!doctype html><html><body><h1>Sign in</h1>
<form method="post" action="/login">
<input type="hidden" name="login_challenge" value="ch&amp;1">
<input type="hidden" name="csrf_token" value="tok">
<label>E-mail <input type="email" name="email" value="" required></label>
<label>Password <input type="password" name="password" required></label>
<button type="submit">Sign in</button>
</form></body></html>`,
			wantAction: "https://gateway.test:8443/login",
			wantFields: url.Values{"login_challenge": {"ch&1"}, "csrf_token": {"tok"}, "email": {""}, "password": {""}},
		},
		{
			name: "a search form first, the login form second, no action",
			page: `<form action="/search"><input name="q"></form>
<form method="POST"><INPUT TYPE="PASSWORD" NAME="password"><input type=hidden name=login_challenge value=xyz></form>`,
			wantAction: "https://gateway.test:8443/login?login_challenge=abc",
			wantFields: url.Values{"password": {""}, "login_challenge": {"xyz"}},
		},
		{
			name:       "absolute action elsewhere",
			page:       `<form action="http://127.0.0.1:8084/login"><input type="password" name="password"></form>`,
			wantAction: "http://127.0.0.1:8084/login",
			wantFields: url.Values{"password": {""}},
		},
		{name: "no password input", page: `<form action="/consent"><input type="hidden" name="consent_challenge" value="c"></form>`, wantErr: true},
		{name: "no form", page: `<p>the sign-in link is invalid</p>`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseLoginForm(strings.NewReader(tt.page), base)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseLoginForm = %+v; want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseLoginForm = %v", err)
			}
			if got.action != tt.wantAction {
				t.Errorf("action = %q; want %q", got.action, tt.wantAction)
			}
			if diff := cmp.Diff(tt.wantFields, got.fields); diff != "" {
				t.Errorf("fields (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCodeOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		callback, want string
		wantErr        string
	}{
		{"http://127.0.0.1:8484/callback?code=c1&state=s1&scope=openid", "c1", ""},
		{"http://127.0.0.1:8484/callback?code=c1&state=other", "", "state"},
		{"http://127.0.0.1:8484/callback?state=s1", "", "no code"},
		{"http://127.0.0.1:8484/callback?error=access_denied&error_description=The+customer+denied&state=s1", "", "access_denied: The customer denied"},
	}
	for _, tt := range tests {
		u, _ := url.Parse(tt.callback)
		got, err := codeOf(u, "s1")
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("codeOf(%s) = %q, %v; want an error mentioning %q", tt.callback, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("codeOf(%s) = %q, %v; want %q", tt.callback, got, err, tt.want)
		}
	}
}

func TestDiscover(t *testing.T) {
	t.Parallel()
	var issuer string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/openid-configuration" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, `{"issuer":"`+issuer+`","authorization_endpoint":"`+issuer+`oauth2/auth","token_endpoint":"`+issuer+`oauth2/token"}`)
	}))
	defer srv.Close()
	ctx := context.Background()

	issuer = srv.URL + "/"
	ep, err := discover(ctx, srv.Client(), srv.URL+"/")
	if err != nil || ep.AuthURL != srv.URL+"/oauth2/auth" || ep.TokenURL != srv.URL+"/oauth2/token" {
		t.Errorf("discover = %+v, %v; want the document's endpoints", ep, err)
	}
	issuer = "http://impostor.test/"
	if _, err := discover(ctx, srv.Client(), srv.URL+"/"); err == nil || !strings.Contains(err.Error(), "impostor") {
		t.Errorf("discover(document of another issuer) = %v; want an error", err)
	}
	if _, err := discover(ctx, srv.Client(), srv.URL+"/nowhere/"); err == nil {
		t.Error("discover(no document) = nil error; want one")
	}
}
