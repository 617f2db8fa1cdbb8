package identity

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/pkg/dbtest"
	"github.com/orderflow/orderflow/pkg/redisconn"
)

// fakeHydra is a hand-written stand-in for Hydra's admin API: it serves the
// login and consent requests a test registers and records every accept and
// reject, so a test can tell that nothing was accepted.
type fakeHydra struct {
	srv *httptest.Server

	mu       sync.Mutex
	logins   map[string]LoginRequest
	consents map[string]ConsentRequest
	handled  map[string]bool
	// accepted maps a login challenge to the subject accepted for it.
	accepted map[string]string
	// granted maps a consent challenge to the scopes and audience granted.
	granted  map[string][2][]string
	rejected map[string]string
}

func newFakeHydra(t *testing.T) *fakeHydra {
	t.Helper()
	f := &fakeHydra{
		logins: map[string]LoginRequest{}, consents: map[string]ConsentRequest{}, handled: map[string]bool{},
		accepted: map[string]string{}, granted: map[string][2][]string{}, rejected: map[string]string{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health/ready", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("GET /admin/oauth2/auth/requests/login", func(w http.ResponseWriter, r *http.Request) {
		serveRequest(f, w, r.URL.Query().Get("login_challenge"), f.logins)
	})
	mux.HandleFunc("PUT /admin/oauth2/auth/requests/login/accept", func(w http.ResponseWriter, r *http.Request) {
		ch := r.URL.Query().Get("login_challenge")
		var body struct {
			Subject  string `json:"subject"`
			Remember *bool  `json:"remember"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Subject == "" || body.Remember == nil {
			http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
			return
		}
		settle(f, w, ch, f.logins, func() { f.accepted[ch] = body.Subject }, "http://hydra.test/oauth2/auth?login_verifier="+ch)
	})
	mux.HandleFunc("GET /admin/oauth2/auth/requests/consent", func(w http.ResponseWriter, r *http.Request) {
		serveRequest(f, w, r.URL.Query().Get("consent_challenge"), f.consents)
	})
	mux.HandleFunc("PUT /admin/oauth2/auth/requests/consent/accept", func(w http.ResponseWriter, r *http.Request) {
		ch := r.URL.Query().Get("consent_challenge")
		var body struct {
			GrantScope    []string `json:"grant_scope"`
			GrantAudience []string `json:"grant_access_token_audience"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
			return
		}
		settle(f, w, ch, f.consents, func() { f.granted[ch] = [2][]string{body.GrantScope, body.GrantAudience} },
			"http://hydra.test/oauth2/auth?consent_verifier="+ch)
	})
	mux.HandleFunc("PUT /admin/oauth2/auth/requests/consent/reject", func(w http.ResponseWriter, r *http.Request) {
		ch := r.URL.Query().Get("consent_challenge")
		var body struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		settle(f, w, ch, f.consents, func() { f.rejected[ch] = body.Error }, "http://client.test/callback?error="+body.Error)
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// serveRequest answers Hydra's GET of the login or consent request ch, one
// of requests.
func serveRequest[T any](f *fakeHydra, w http.ResponseWriter, ch string, requests map[string]T) {
	f.mu.Lock()
	req, ok := requests[ch]
	done := f.handled[ch]
	f.mu.Unlock()
	f.answer(w, ch, ok, done, req)
}

// settle answers an accept or reject of ch, one of requests, redirecting to
// to: the first one for a known challenge is recorded (under f.mu) and
// handles it, as Hydra does.
func settle[T any](f *fakeHydra, w http.ResponseWriter, ch string, requests map[string]T, record func(), to string) {
	f.mu.Lock()
	_, ok := requests[ch]
	done := f.handled[ch]
	if ok && !done {
		record()
		f.handled[ch] = true
	}
	f.mu.Unlock()
	f.answer(w, ch, ok, done, redirect{RedirectTo: to})
}

// answer writes v, or Hydra's 404 for an unknown challenge, or its 410 for
// one already handled.
func (f *fakeHydra) answer(w http.ResponseWriter, ch string, known, handled bool, v any) {
	w.Header().Set("Content-Type", "application/json")
	switch {
	case !known:
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error":"Not Found","error_description":"Unable to locate the requested resource"}`)
	case handled:
		w.WriteHeader(http.StatusGone)
		_ = json.NewEncoder(w).Encode(redirect{RedirectTo: "http://hydra.test/already-handled?challenge=" + ch})
	default:
		_ = json.NewEncoder(w).Encode(v)
	}
}

func (f *fakeHydra) addLogin(ch string, lr LoginRequest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	lr.Challenge = ch
	f.logins[ch] = lr
}

func (f *fakeHydra) addConsent(ch string, cr ConsentRequest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cr.Challenge = ch
	f.consents[ch] = cr
}

func (f *fakeHydra) acceptedSubject(ch string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.accepted[ch]
	return s, ok
}

// acceptCount is the number of logins and consents accepted so far.
func (f *fakeHydra) acceptCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.accepted) + len(f.granted)
}

// testRedis returns a client of the local Redis, failing the test with a
// hint when it does not answer.
func testRedis(t *testing.T) *redis.Client {
	t.Helper()
	rdb, err := redisconn.Open("redis://127.0.0.1:6379/0", 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	// A generous deadline: the client's own timeouts are tuned for a
	// request path that fails open, not for a busy test machine.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis is needed for this test and does not answer on 127.0.0.1:6379 (start it with `make deps` or `redis-server --daemonize yes`): %v", err)
	}
	return rdb
}

// fixture is one handler under test over a fresh database, the local Redis
// with keys of its own, and a fake Hydra.
type fixture struct {
	hydra *fakeHydra
	svc   *Service
	csrf  *CSRF
	h     http.Handler
	srv   *httptest.Server
}

func newFixture(t *testing.T, loginRate int) *fixture {
	t.Helper()
	fsys, err := migrations.For("identity")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	hydra := newFakeHydra(t)
	limiter := NewLoginLimiter(testRedis(t), "identity-test:"+NewBrowserID()+":", loginRate, log)
	svc := NewService(log, NewStore(dbtest.NewPool(t, fsys)), NewHydra(hydra.srv.URL, hydra.srv.Client()),
		NewHasher(testParams, 2), limiter)
	csrf, err := NewCSRF(strings.Repeat("test-key-", 4))
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHandler(log, svc, csrf, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &fixture{hydra: hydra, svc: svc, csrf: csrf, h: h, srv: srv}
}

// browser returns a client with its own cookie jar that does not follow
// redirects, so a test sees each one.
func (f *fixture) browser(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

type response struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, c *http.Client, req *http.Request) response {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (f *fixture) get(t *testing.T, c *http.Client, path string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, c, req)
}

func (f *fixture) postForm(t *testing.T, c *http.Client, path string, form url.Values) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return do(t, c, req)
}

func (f *fixture) postJSON(t *testing.T, path, contentType, body string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return do(t, http.DefaultClient, req)
}

// signUp creates a customer through the service and returns its id.
func (f *fixture) signUp(t *testing.T, email, password string) string {
	t.Helper()
	in, problems := SignUp{Email: email, Password: password, Name: "Test"}.Normalize()
	if len(problems) > 0 {
		t.Fatalf("sign-up %s: %v", email, problems)
	}
	c, err := f.svc.SignUp(context.Background(), "192.0.2.250", in)
	if err != nil {
		t.Fatal(err)
	}
	return c.ID
}

// hiddenField returns the value of the named hidden input in a page.
func hiddenField(t *testing.T, page, name string) string {
	t.Helper()
	marker := `name="` + name + `" value="`
	i := strings.Index(page, marker)
	if i < 0 {
		t.Fatalf("the page has no hidden %s field:\n%s", name, page)
	}
	rest := page[i+len(marker):]
	return rest[:strings.IndexByte(rest, '"')]
}
