// Package e2e drives the whole order flow across the real processes: the
// four services and the payment provider built from this module, each on its
// own database on the local PostgreSQL, with fauxqs for SQS and an SMTP
// listener started by the test.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/orderflow/orderflow/pkg/authtest"
	"github.com/orderflow/orderflow/pkg/dbtest"
	"github.com/orderflow/orderflow/pkg/queue/queuetest"
	"github.com/orderflow/orderflow/pkg/smtptest"
)

// providerKey is the payment provider's API key in every stack.
const providerKey = "e2e-provider-key"

// binDir holds the freshly built services; hydra is the package's Ory
// Hydra, whose tokens every stack's services check.
var (
	binDir  string
	hydra   *authtest.Hydra
	tokens  sync.Map // customer id or "admin" → access token
	tokenMu sync.Mutex
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "orderflow-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	cmd := exec.Command("go", "build", "-o", dir+"/",
		"github.com/orderflow/orderflow/services/order",
		"github.com/orderflow/orderflow/services/inventory",
		"github.com/orderflow/orderflow/services/payment",
		"github.com/orderflow/orderflow/services/payment/provider",
		"github.com/orderflow/orderflow/services/notification",
		"github.com/orderflow/orderflow/services/identity")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build the services:", err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	hydra, err = authtest.StartProcess(ctx, authtest.Options{AccessTokenTTL: time.Hour})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start Hydra:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	hydra.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

// process is one running binary of the stack.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// stack is the five processes with their databases and ports.
type stack struct {
	t     *testing.T
	dir   string
	ports map[string]int
	env   map[string][]string
	db    map[string]string
	smtp  *smtptest.Server

	mu    sync.Mutex
	procs map[string]*process
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startStack starts provider, inventory, payment, notification and order,
// and stops them when the test ends.
func startStack(t *testing.T, extraOrderEnv ...string) *stack {
	t.Helper()
	sqs := queuetest.Config(t)
	s := &stack{
		t: t, dir: t.TempDir(), ports: map[string]int{}, env: map[string][]string{},
		db: map[string]string{}, procs: map[string]*process{}, smtp: smtptest.Start(t),
	}
	for _, name := range []string{"order", "inventory", "payment", "provider", "notification", "identity"} {
		s.ports[name] = freePort(t)
	}
	for _, name := range []string{"order", "inventory", "payment", "notification", "identity", "provider"} {
		s.db[name] = dbtest.NewURL(t, nil) // the services migrate their own database
	}
	invoices, emails := queuetest.Name("order-invoices"), queuetest.Name("order-emails")
	aws := []string{"AWS_REGION=" + sqs.Region, "AWS_ENDPOINT_URL_SQS=" + sqs.Endpoint,
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test"}
	url := func(name string) string { return fmt.Sprintf("http://127.0.0.1:%d", s.ports[name]) }
	addr := func(name string) string { return fmt.Sprintf("127.0.0.1:%d", s.ports[name]) }
	s.env["provider"] = []string{"PROVIDER_ADDR=" + addr("provider"), "PROVIDER_API_KEY=" + providerKey,
		"PROVIDER_DATABASE_URL=" + s.db["provider"]}
	s.env["inventory"] = []string{"INVENTORY_ADDR=" + addr("inventory"), "INVENTORY_DATABASE_URL=" + s.db["inventory"],
		"INVENTORY_SEED_PRODUCTS=100", "INVENTORY_SWEEP_INTERVAL=1s",
		// Stacks share the local Redis: each gets its own cache keys.
		"INVENTORY_CACHE_PREFIX=" + queuetest.Name("e2e") + ":"}
	s.env["payment"] = []string{"PAYMENT_ADDR=" + addr("payment"), "PAYMENT_DATABASE_URL=" + s.db["payment"],
		"PAYMENT_PROVIDER_URL=" + url("provider"), "PAYMENT_PROVIDER_TIMEOUT=3s", "PAYMENT_PROVIDER_API_KEY=" + providerKey,
		// Unknown capture outcomes settle 12s after the attempt (a provider
		// call takes at most 11.5s here), not 1m: the suite waits for them.
		"PAYMENT_RECONCILE_AFTER=12s"}
	s.env["notification"] = append([]string{"NOTIFICATION_ADDR=" + addr("notification"),
		"NOTIFICATION_DATABASE_URL=" + s.db["notification"], "NOTIFICATION_SMTP_ADDR=" + s.smtp.Addr(),
		"NOTIFICATION_INVOICE_QUEUE=" + invoices, "NOTIFICATION_EMAIL_QUEUE=" + emails}, aws...)
	s.env["order"] = append(append([]string{"ORDER_ADDR=" + addr("order"), "ORDER_DATABASE_URL=" + s.db["order"],
		"ORDER_INVENTORY_URL=" + url("inventory"), "ORDER_PAYMENT_URL=" + url("payment"),
		"ORDER_INVOICE_QUEUE=" + invoices, "ORDER_EMAIL_QUEUE=" + emails, "ORDER_CLIENT_SECRET=" + authtest.OrderSecret,
		"ORDER_CALL_TIMEOUT=1800ms", "ORDER_REQUEST_TIMEOUT=8s", "ORDER_RECOVERY_INTERVAL=500ms", "ORDER_RECOVERY_AFTER=9s"}, aws...), extraOrderEnv...)
	// identity signs customers up and serves the login pages; the stacks'
	// customers sign in through authtest's login app (login_hint).
	s.env["identity"] = []string{"IDENTITY_ADDR=" + addr("identity"), "IDENTITY_DATABASE_URL=" + s.db["identity"],
		"IDENTITY_HYDRA_ADMIN_URL=" + hydra.AdminURL, "IDENTITY_CSRF_KEY=e2e-csrf-key-0123456789abcdef0123456789",
		"IDENTITY_LOGIN_RATE=0"}
	for _, name := range []string{"provider", "inventory", "payment", "notification", "order", "identity"} {
		s.start(name)
	}
	t.Cleanup(func() {
		for _, name := range []string{"identity", "order", "notification", "payment", "inventory", "provider"} {
			s.stop(name)
		}
		if t.Failed() {
			for _, name := range []string{"order", "inventory", "payment", "provider", "notification", "identity"} {
				b, _ := os.ReadFile(filepath.Join(s.dir, name+".log"))
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				if len(lines) > 40 {
					lines = lines[len(lines)-40:]
				}
				t.Logf("--- last lines of %s ---\n%s", name, strings.Join(lines, "\n"))
			}
		}
	})
	return s
}

func (s *stack) url(name, path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", s.ports[name], path)
}

// start starts a process and waits until its /readyz answers 200.
func (s *stack) start(name string) {
	s.t.Helper()
	logPath := filepath.Join(s.dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binDir, name))
	cmd.Env = append(append(os.Environ(), "AUTH_ISSUER="+hydra.Issuer, "LOG_LEVEL=info"), s.env[name]...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	s.mu.Lock()
	s.procs[name] = p
	s.mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			b, _ := os.ReadFile(logPath)
			s.t.Fatalf("%s exited during start-up:\n%s", name, b)
		default:
		}
		resp, err := http.Get(s.url(name, "/readyz"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("%s not ready within 60s", name)
}

// stop sends SIGTERM and waits for a graceful exit.
func (s *stack) stop(name string) { s.signal(name, syscall.SIGTERM) }

// kill sends SIGKILL: the process dies at once, mid-request.
func (s *stack) kill(name string) { s.signal(name, syscall.SIGKILL) }

func (s *stack) signal(name string, sig syscall.Signal) {
	s.mu.Lock()
	p := s.procs[name]
	delete(s.procs, name)
	s.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		s.t.Errorf("%s did not exit within 20s of %v", name, sig)
	}
}

// response is an HTTP answer with its JSON body decoded.
type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

func (s *stack) do(method, service, path string, body any, headers ...string) response {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			s.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.url(service, path), rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	// An operator's token unless the call says who it is (an empty
	// Authorization value sends none).
	req.Header.Set("Authorization", "Bearer "+token(s.t, "admin"))
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	if req.Header.Get("Authorization") == "" {
		req.Header.Del("Authorization")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, raw: raw}
	if len(raw) > 0 {
		_ = json.Unmarshal(raw, &r.body)
	}
	return r
}

// token returns a real access token from the package's Hydra, made once:
// "admin" is the orderflow-admin client's (scope orderflow.admin),
// "order-service:SCOPE" the order service client's with SCOPE, any other
// name a customer's of that id (authorization code + PKCE).
func token(t *testing.T, who string) string {
	t.Helper()
	if tok, ok := tokens.Load(who); ok {
		return tok.(string)
	}
	// One sign-in at a time: forty concurrent logins are not what this
	// suite tests, and they queue up inside Hydra.
	tokenMu.Lock()
	defer tokenMu.Unlock()
	if tok, ok := tokens.Load(who); ok {
		return tok.(string)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var tok string
	var err error
	switch {
	case who == "admin":
		tok, err = hydra.AdminToken(ctx)
	case strings.HasPrefix(who, "order-service:"): // the order service's, with one scope
		tok, err = hydra.ClientToken(ctx, "orderflow-order", authtest.OrderSecret, strings.TrimPrefix(who, "order-service:"))
	default:
		tok, err = hydra.CustomerToken(ctx, who)
	}
	if err != nil {
		t.Fatalf("token for %s: %v", who, err)
	}
	tokens.Store(who, tok)
	return tok
}

// admin is the header of an operator's call; as is a customer's.
func (s *stack) admin() []string { return []string{"Authorization", "Bearer " + token(s.t, "admin")} }
func (s *stack) as(customer string) []string {
	return []string{"Authorization", "Bearer " + token(s.t, customer)}
}

func orderBody(customer, sku string, qty int, method string) map[string]any {
	return map[string]any{
		"customer_id": customer, "email": customer + "@example.com",
		"items":          []map[string]any{{"sku": sku, "quantity": qty}},
		"payment_method": method,
	}
}

var keySeq struct {
	sync.Mutex
	n int
}

func newKey() string {
	keySeq.Lock()
	defer keySeq.Unlock()
	keySeq.n++
	return fmt.Sprintf("e2e-%d-%d", time.Now().UnixNano(), keySeq.n)
}

// placeOrder places an order as the customer its body names.
func (s *stack) placeOrder(body map[string]any, key string) response {
	s.t.Helper()
	customer, _ := body["customer_id"].(string)
	return s.do(http.MethodPost, "order", "/v1/orders", body, append(s.as(customer), "Idempotency-Key", key)...)
}

func (s *stack) setProvider(latencyMS int, errorRate float64, outage bool) {
	s.t.Helper()
	r := s.do(http.MethodPut, "payment", "/admin/provider",
		map[string]any{"latency_ms": latencyMS, "error_rate": errorRate, "outage": outage}, s.admin()...)
	if r.status != http.StatusOK {
		s.t.Fatalf("PUT /admin/provider = %d %s", r.status, r.raw)
	}
}

func (s *stack) setStock(sku string, n int) {
	s.t.Helper()
	r := s.do(http.MethodPut, "inventory", "/v1/products/"+sku+"/stock", map[string]any{"available": n}, s.admin()...)
	if r.status != http.StatusOK {
		s.t.Fatalf("PUT stock %s = %d %s", sku, r.status, r.raw)
	}
}

func (s *stack) available(sku string) int {
	s.t.Helper()
	r := s.do(http.MethodGet, "inventory", "/v1/products/"+sku, nil)
	if r.status != http.StatusOK {
		s.t.Fatalf("GET product %s = %d %s", sku, r.status, r.raw)
	}
	return int(r.body["available"].(float64))
}

// eventually polls cond every 100ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("not within %v: %s", timeout, what)
}

func jsonReader(v any) io.Reader {
	b, _ := json.Marshal(v)
	return bytes.NewReader(b)
}
