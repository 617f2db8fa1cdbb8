// Package authtest starts a real Ory Hydra (the OpenID Connect provider of
// Orderflow) for tests and load programs: its own database on the local
// PostgreSQL, free ports, Orderflow's OAuth 2.0 clients from
// deploy/hydra/clients, and helpers that get real tokens from it.
//
// Hydra keeps no users: a login and consent app accepts each sign-in. A
// test that brings its own (the identity service) passes its URLs in
// Options; without them authtest runs a minimal one inside the test process
// that signs in whoever the login_hint names, so CustomerToken gets a real
// authorization-code + PKCE token for any customer id.
package authtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/orderflow/orderflow/pkg/auth"
	"github.com/orderflow/orderflow/pkg/dbtest"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/web"
)

// The client secrets Start registers (test-only values).
const (
	AdminSecret = "authtest-admin-secret"
	OrderSecret = "authtest-order-secret"
)

// Audience is the audience every Orderflow service wants in a token.
const Audience = "orderflow"

// Options configure Start.
type Options struct {
	// LoginURL and ConsentURL are the login and consent app's pages. Empty:
	// authtest serves its own, which signs in the login_hint's subject.
	LoginURL, ConsentURL string
	// AccessTokenTTL overrides the 15 min lifetime of access tokens.
	AccessTokenTTL time.Duration
	// Log receives Hydra's output (nil: discarded).
	Log io.Writer
}

// Hydra is a running Ory Hydra process.
type Hydra struct {
	Issuer    string // "http://127.0.0.1:PORT/", the iss of every token
	PublicURL string // the same as Issuer
	AdminURL  string // "http://127.0.0.1:PORT", the admin API

	cmd     *exec.Cmd
	done    chan struct{}
	dbName  string
	login   *httptest.Server
	cleanup []func()
}

// Start starts Hydra for t and stops it when t ends. When PostgreSQL or the
// Hydra binary is missing, t fails and says how to get them.
func Start(t testing.TB, opt Options) *Hydra {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h, err := StartProcess(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// Bin returns the Hydra binary: $HYDRA_BIN, else bin/hydra of the checkout
// (scripts/hydra.sh build puts it there; make test and make dev run it).
func Bin() (string, error) {
	if b := os.Getenv("HYDRA_BIN"); b != "" {
		return b, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	b := filepath.Join(root, "bin", "hydra")
	if _, err := os.Stat(b); err != nil {
		return "", fmt.Errorf("Ory Hydra v2.3.0 is needed and %s is missing: run scripts/hydra.sh build (make test does), or set HYDRA_BIN", b)
	}
	return b, nil
}

// StartProcess is Start for callers without a testing.TB (TestMain, load
// programs); the caller calls Close.
func StartProcess(ctx context.Context, opt Options) (*Hydra, error) {
	bin, err := Bin()
	if err != nil {
		return nil, err
	}
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	h := &Hydra{done: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			h.Close()
		}
	}()
	if opt.LoginURL == "" {
		h.login = httptest.NewServer(h.loginApp())
		opt.LoginURL, opt.ConsentURL = h.login.URL+"/login", h.login.URL+"/consent"
	}

	dsn, err := h.createDatabase(ctx, bin)
	if err != nil {
		return nil, err
	}

	public, admin := freePort(), freePort()
	h.Issuer = fmt.Sprintf("http://127.0.0.1:%d/", public)
	h.PublicURL = h.Issuer
	h.AdminURL = fmt.Sprintf("http://127.0.0.1:%d", admin)
	ttl := opt.AccessTokenTTL
	if ttl == 0 {
		ttl = 15 * time.Minute
	}
	cmd := exec.Command(bin, "serve", "all", "--dev", "-c", filepath.Join(root, "deploy", "hydra", "hydra.yml"))
	cmd.Env = append(os.Environ(), "DSN="+dsn, "SECRETS_SYSTEM=authtest-system-secret-"+randomHex(8),
		fmt.Sprintf("SERVE_PUBLIC_PORT=%d", public), fmt.Sprintf("SERVE_ADMIN_PORT=%d", admin),
		"URLS_SELF_ISSUER="+h.Issuer, "URLS_LOGIN="+opt.LoginURL, "URLS_CONSENT="+opt.ConsentURL,
		"TTL_ACCESS_TOKEN="+ttl.String())
	cmd.Stdout, cmd.Stderr = opt.Log, opt.Log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start hydra: %w", err)
	}
	h.cmd = cmd
	go func() { _ = cmd.Wait(); close(h.done) }()
	if err := h.waitReady(ctx); err != nil {
		return nil, err
	}
	if err := h.registerClients(ctx, filepath.Join(root, "deploy", "hydra", "clients")); err != nil {
		return nil, err
	}
	ok = true
	return h, nil
}

// createDatabase creates a fresh database for Hydra, which Close drops, and
// has Hydra migrate it; it returns the database's URL.
func (h *Hydra) createDatabase(ctx context.Context, bin string) (string, error) {
	h.dbName = "orderflow_hydra_" + randomHex(6)
	u, err := url.Parse(dbtest.ServerURL())
	if err != nil {
		return "", err
	}
	u.Path = "/" + h.dbName
	dsn := u.String()
	if err := postgres.CreateDatabase(ctx, dsn); err != nil {
		return "", fmt.Errorf("PostgreSQL is needed for Hydra and is not reachable (start it with make deps): %w", err)
	}
	migrate := exec.CommandContext(ctx, bin, "migrate", "sql", "up", "-e", "--yes")
	migrate.Env = append(os.Environ(), "DSN="+dsn)
	if out, err := migrate.CombinedOutput(); err != nil {
		return "", fmt.Errorf("hydra migrate: %w\n%s", err, out)
	}
	return dsn, nil
}

// Close stops Hydra and drops its database.
func (h *Hydra) Close() {
	if h.cmd != nil && h.cmd.Process != nil {
		_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
			<-h.done
		}
		h.cmd = nil
	}
	if h.login != nil {
		h.login.Close()
		h.login = nil
	}
	if h.dbName != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, dbtest.ServerURL()); err == nil {
			_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{h.dbName}.Sanitize()+" WITH (FORCE)")
			conn.Close(ctx)
		}
		h.dbName = ""
	}
}

func (h *Hydra) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		select {
		case <-h.done:
			return errors.New("hydra exited during start-up (pass Options.Log to see why)")
		case <-ctx.Done():
			return fmt.Errorf("hydra not ready at %s: %w", h.AdminURL, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
		ready := true
		for _, u := range []string{h.AdminURL + "/health/ready", h.PublicURL + ".well-known/jwks.json"} {
			resp, err := http.Get(u)
			if err != nil {
				ready = false
				break
			}
			resp.Body.Close()
			ready = ready && resp.StatusCode == http.StatusOK
		}
		if ready {
			return nil
		}
	}
}

// registerClients creates the clients of deploy/hydra/clients, with the
// test secrets in place of ${SECRET}.
func (h *Hydra) registerClients(ctx context.Context, dir string) error {
	secrets := map[string]string{"orderflow-admin": AdminSecret, "orderflow-order": OrderSecret}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no client definitions in %s", dir)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		id := strings.TrimSuffix(filepath.Base(f), ".json")
		b = bytes.ReplaceAll(b, []byte("${SECRET}"), []byte(secrets[id]))
		if err := h.admin(ctx, http.MethodPost, "/admin/clients", json.RawMessage(b), nil); err != nil {
			return fmt.Errorf("register client %s: %w", id, err)
		}
	}
	return nil
}

// CreateClient registers another OAuth 2.0 client (a Hydra client JSON).
func (h *Hydra) CreateClient(ctx context.Context, client map[string]any) error {
	return h.admin(ctx, http.MethodPost, "/admin/clients", client, nil)
}

// ClientToken gets an access token with the client-credentials grant, for
// audience orderflow.
func (h *Hydra) ClientToken(ctx context.Context, clientID, secret string, scopes ...string) (string, error) {
	cc := clientcredentials.Config{ClientID: clientID, ClientSecret: secret, TokenURL: h.PublicURL + "oauth2/token",
		Scopes: scopes, EndpointParams: url.Values{"audience": {Audience}}}
	tok, err := cc.Token(ctx)
	if err != nil {
		return "", fmt.Errorf("client credentials token for %s: %w", clientID, err)
	}
	return tok.AccessToken, nil
}

// AdminToken is ClientToken for orderflow-admin with scope orderflow.admin.
func (h *Hydra) AdminToken(ctx context.Context) (string, error) {
	return h.ClientToken(ctx, "orderflow-admin", AdminSecret, "orderflow.admin")
}

// CustomerToken signs customer (a "cus_…" id) in through the built-in login
// app with the authorization-code + PKCE flow of the orderflow-cli client
// and returns the access token. Only without Options.LoginURL.
func (h *Hydra) CustomerToken(ctx context.Context, customer string) (string, error) {
	if h.login == nil {
		return "", errors.New("CustomerToken needs authtest's own login app (Options.LoginURL empty)")
	}
	const redirect = "http://127.0.0.1:8484/callback"
	conf := oauth2.Config{ClientID: "orderflow-cli", RedirectURL: redirect,
		Scopes:   []string{"openid", "offline_access", "orders"},
		Endpoint: oauth2.Endpoint{AuthURL: h.PublicURL + "oauth2/auth", TokenURL: h.PublicURL + "oauth2/token", AuthStyle: oauth2.AuthStyleInParams}}
	verifier, state := oauth2.GenerateVerifier(), randomHex(16)
	authURL := conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("audience", Audience), oauth2.SetAuthURLParam("login_hint", customer))
	jar, _ := cookiejar.New(nil)
	var code string
	hc := &http.Client{Jar: jar, Timeout: 20 * time.Second, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), redirect) {
			q := req.URL.Query()
			if q.Get("state") != state {
				return fmt.Errorf("callback with state %q, want %q", q.Get("state"), state)
			}
			if e := q.Get("error"); e != "" {
				return fmt.Errorf("authorization refused: %s: %s", e, q.Get("error_description"))
			}
			code = q.Get("code")
			return http.ErrUseLastResponse
		}
		return nil
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("authorization flow: %w", err)
	}
	resp.Body.Close()
	if code == "" {
		return "", fmt.Errorf("authorization flow ended at %s with %d and no code", resp.Request.URL, resp.StatusCode)
	}
	tok, err := conf.Exchange(context.WithValue(ctx, oauth2.HTTPClient, hc), code, oauth2.VerifierOption(verifier))
	if err != nil {
		return "", fmt.Errorf("exchange code: %w", err)
	}
	return tok.AccessToken, nil
}

// loginApp accepts every login with the login_hint as the subject, and
// every consent with what was asked for: the stand-in for the identity
// service in tests of the other services.
func (h *Hydra) loginApp() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {
		challenge := r.URL.Query().Get("login_challenge")
		var req struct {
			OIDCContext struct {
				LoginHint string `json:"login_hint"`
			} `json:"oidc_context"`
		}
		if err := h.admin(r.Context(), http.MethodGet, "/admin/oauth2/auth/requests/login?login_challenge="+url.QueryEscape(challenge), nil, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		if req.OIDCContext.LoginHint == "" {
			http.Error(w, "authtest: the login needs a login_hint naming the subject", http.StatusBadRequest)
			return
		}
		var out struct {
			RedirectTo string `json:"redirect_to"`
		}
		if err := h.admin(r.Context(), http.MethodPut, "/admin/oauth2/auth/requests/login/accept?login_challenge="+url.QueryEscape(challenge),
			map[string]any{"subject": req.OIDCContext.LoginHint}, &out); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		http.Redirect(w, r, out.RedirectTo, http.StatusFound)
	})
	mux.HandleFunc("GET /consent", func(w http.ResponseWriter, r *http.Request) {
		challenge := r.URL.Query().Get("consent_challenge")
		var req struct {
			RequestedScope    []string `json:"requested_scope"`
			RequestedAudience []string `json:"requested_access_token_audience"`
		}
		if err := h.admin(r.Context(), http.MethodGet, "/admin/oauth2/auth/requests/consent?consent_challenge="+url.QueryEscape(challenge), nil, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		var out struct {
			RedirectTo string `json:"redirect_to"`
		}
		if err := h.admin(r.Context(), http.MethodPut, "/admin/oauth2/auth/requests/consent/accept?consent_challenge="+url.QueryEscape(challenge),
			map[string]any{"grant_scope": req.RequestedScope, "grant_access_token_audience": req.RequestedAudience}, &out); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		http.Redirect(w, r, out.RedirectTo, http.StatusFound)
	})
	return mux
}

// admin calls Hydra's admin API with a JSON body (nil: none) and decodes
// the answer into out (nil: discarded).
func (h *Hydra) admin(ctx context.Context, method, path string, body, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.AdminURL+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("authtest: no go.mod above the working directory")
		}
		dir = parent
	}
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Tokens is a stand-in for auth.Verifier.Authenticate in handler tests: a
// bearer token that is a key of tokens authenticates as its Principal, any
// other token is refused with 401 as the real verifier refuses it, and a
// request without one passes on anonymous. Real tokens are verified against
// a real Hydra in pkg/auth's tests and end to end in e2e/.
func Tokens(tokens map[string]auth.Principal) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := r.Header.Get("Authorization")
			if h == "" {
				next.ServeHTTP(w, r)
				return
			}
			p, ok := tokens[strings.TrimPrefix(h, "Bearer ")]
			if !ok || !strings.HasPrefix(h, "Bearer ") {
				w.Header().Set("WWW-Authenticate", `Bearer realm="orderflow", error="invalid_token"`)
				web.WriteProblem(w, web.NewProblem(http.StatusUnauthorized, "unauthorized", "the access token is not valid"))
				return
			}
			next.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
		})
	}
}
