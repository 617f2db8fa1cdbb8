// Package stack starts Orderflow's processes (order, inventory, payment, the
// payment provider and notification) from freshly built binaries on free
// ports, for the tests in test/ and the measurements in loadtest/. The
// services talk to the real local components: PostgreSQL (the caller hands
// in one database per service), Redis, the SQS endpoint and an SMTP server,
// and they check access tokens of a real Ory Hydra (pkg/authtest), which the
// caller starts and hands in: one Hydra may serve several stacks. Callers
// get their own tokens from it (CustomerToken, AdminToken).
package stack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/pkg/authtest"
	"github.com/orderflow/orderflow/pkg/postgres"
)

// Services lists every process, in start order.
var Services = []string{"provider", "inventory", "payment", "notification", "order"}

// Build compiles the binaries into dir.
func Build(dir string) error {
	cmd := exec.Command("go", "build", "-o", dir+"/",
		"github.com/orderflow/orderflow/services/order",
		"github.com/orderflow/orderflow/services/inventory",
		"github.com/orderflow/orderflow/services/payment",
		"github.com/orderflow/orderflow/services/payment/provider",
		"github.com/orderflow/orderflow/services/notification")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build the services: %w", err)
	}
	return nil
}

// Config is what a stack runs with.
type Config struct {
	BinDir string // where Build put the binaries
	LogDir string // one <service>.log per process
	// Databases maps "order", "inventory", "payment", "notification" to a
	// database URL each; the services migrate them. "provider" may name
	// the payment provider's ledger too; without it Start creates a fresh
	// one on payment's server and Close drops it.
	Databases   map[string]string
	SQSEndpoint string // fauxqs: http://127.0.0.1:4566
	SMTPAddr    string // notification's SMTP server
	// Only lists the services to start (nil: all). Without notification,
	// the queues simply fill up.
	Only []string
	// Env is added to every process (OTEL_*, LOG_LEVEL); ServiceEnv to one.
	Env        []string
	ServiceEnv map[string][]string
	// Hydra is the OpenID Connect provider whose tokens the services
	// accept and from which order gets its own (required).
	Hydra *authtest.Hydra
}

// Stack is a running set of processes.
type Stack struct {
	cfg    Config
	Ports  map[string]int
	Queues [2]string // the invoice and e-mail queue names, unique per stack

	mu    sync.Mutex
	procs map[string]*proc
	// providerDB is the provider database Start created, dropped by Close.
	providerDB string
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// ProviderAPIKey is the merchant key the simulated provider wants and
// payment sends it.
const ProviderAPIKey = "stack-provider-key"

// AuthEnv is what process name needs to trust h's tokens and to prove who
// it is: AUTH_ISSUER for every service; for order its client secret at h
// (orderflow-order: its calls to inventory, payment and notification carry
// client-credentials tokens); for payment and the provider the merchant key
// of that hop. Harnesses that start processes of their own (replicas, the
// fault suite) use it too.
func AuthEnv(h *authtest.Hydra, name string) []string {
	switch name {
	case "provider":
		return []string{"PROVIDER_API_KEY=" + ProviderAPIKey}
	case "payment":
		return []string{"AUTH_ISSUER=" + h.Issuer, "PAYMENT_PROVIDER_API_KEY=" + ProviderAPIKey}
	case "order":
		return []string{"AUTH_ISSUER=" + h.Issuer, "ORDER_CLIENT_ID=orderflow-order", "ORDER_CLIENT_SECRET=" + authtest.OrderSecret}
	}
	return []string{"AUTH_ISSUER=" + h.Issuer}
}

// Start starts the services and waits until each /readyz answers 200. On an
// error it stops what it started.
func Start(cfg Config) (*Stack, error) {
	if cfg.Hydra == nil {
		return nil, errors.New("stack: Config.Hydra is required (authtest.Start or authtest.StartProcess)")
	}
	s := &Stack{cfg: cfg, Ports: map[string]int{}, procs: map[string]*proc{}}
	suffix := randomSuffix()
	providerDB := cfg.Databases["provider"]
	if providerDB == "" && (len(cfg.Only) == 0 || slices.Contains(cfg.Only, "provider")) {
		var err error
		if providerDB, err = freshDatabase(cfg.Databases["payment"], "stack_provider_"+suffix); err != nil {
			return nil, err
		}
		s.providerDB = providerDB
	}
	s.Queues = [2]string{"order-invoices-" + suffix, "order-emails-" + suffix}
	for _, name := range Services {
		p, err := FreePort()
		if err != nil {
			s.Close()
			return nil, err
		}
		s.Ports[name] = p
	}
	aws := []string{"AWS_REGION=us-east-1", "AWS_ENDPOINT_URL_SQS=" + cfg.SQSEndpoint,
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test"}
	url := func(name string) string { return fmt.Sprintf("http://127.0.0.1:%d", s.Ports[name]) }
	addr := func(name string) string { return fmt.Sprintf("127.0.0.1:%d", s.Ports[name]) }
	env := map[string][]string{
		"provider": {"PROVIDER_ADDR=" + addr("provider"), "PROVIDER_DATABASE_URL=" + providerDB},
		"inventory": {"INVENTORY_ADDR=" + addr("inventory"), "INVENTORY_DATABASE_URL=" + cfg.Databases["inventory"],
			"INVENTORY_SEED_PRODUCTS=100", "INVENTORY_CACHE_PREFIX=stack-" + suffix + ":"},
		"payment": {"PAYMENT_ADDR=" + addr("payment"), "PAYMENT_DATABASE_URL=" + cfg.Databases["payment"],
			"PAYMENT_PROVIDER_URL=" + url("provider")},
		"notification": append([]string{"NOTIFICATION_ADDR=" + addr("notification"),
			"NOTIFICATION_DATABASE_URL=" + cfg.Databases["notification"], "NOTIFICATION_SMTP_ADDR=" + cfg.SMTPAddr,
			"NOTIFICATION_INVOICE_QUEUE=" + s.Queues[0], "NOTIFICATION_EMAIL_QUEUE=" + s.Queues[1]}, aws...),
		"order": append([]string{"ORDER_ADDR=" + addr("order"), "ORDER_DATABASE_URL=" + cfg.Databases["order"],
			"ORDER_INVENTORY_URL=" + url("inventory"), "ORDER_PAYMENT_URL=" + url("payment"),
			"ORDER_INVOICE_QUEUE=" + s.Queues[0], "ORDER_EMAIL_QUEUE=" + s.Queues[1]}, aws...),
	}
	only := map[string]bool{}
	for _, n := range cfg.Only {
		only[n] = true
	}
	for _, name := range Services {
		if len(only) > 0 && !only[name] {
			continue
		}
		e := slices.Concat([]string{"LOG_LEVEL=info"}, AuthEnv(cfg.Hydra, name), cfg.Env, env[name], cfg.ServiceEnv[name])
		if err := s.start(name, e); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// URL is the address of path on service name.
func (s *Stack) URL(name, path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", s.Ports[name], path)
}

// LogPath is the log file of service name.
func (s *Stack) LogPath(name string) string { return filepath.Join(s.cfg.LogDir, name+".log") }

func (s *Stack) start(name string, env []string) error {
	f, err := os.OpenFile(s.LogPath(name), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(s.cfg.BinDir, name))
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	s.mu.Lock()
	s.procs[name] = p
	s.mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			b, _ := os.ReadFile(s.LogPath(name))
			return fmt.Errorf("%s exited during start-up:\n%s", name, b)
		default:
		}
		resp, err := http.Get(s.URL(name, "/readyz"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready within 60s (log: %s)", name, s.LogPath(name))
}

// Close stops every process with SIGTERM (graceful: spans are flushed) and
// waits for it, killing one that takes longer than 20 s.
func (s *Stack) Close() error {
	var errs []error
	for i := len(Services) - 1; i >= 0; i-- {
		name := Services[i]
		s.mu.Lock()
		p := s.procs[name]
		delete(s.procs, name)
		s.mu.Unlock()
		if p == nil {
			continue
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
			errs = append(errs, fmt.Errorf("%s did not exit within 20s of SIGTERM", name))
		}
	}
	if s.providerDB != "" {
		if err := dropDatabase(s.providerDB); err != nil {
			errs = append(errs, err)
		}
		s.providerDB = ""
	}
	return errors.Join(errs...)
}

// freshDatabase creates the database name on the server of like (a
// database URL) and returns its URL.
func freshDatabase(like, name string) (string, error) {
	if like == "" {
		return "", errors.New(`stack: Config.Databases needs "payment" (its server gets the provider's database) or "provider"`)
	}
	u, err := url.Parse(like)
	if err != nil {
		return "", fmt.Errorf("stack: database url: %w", err)
	}
	u.Path = "/" + name
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := postgres.CreateDatabase(ctx, u.String()); err != nil {
		return "", fmt.Errorf("stack: provider database: %w", err)
	}
	return u.String(), nil
}

// dropDatabase drops the database of dbURL, connecting to its server's
// postgres database.
func dropDatabase(dbURL string) error {
	u, err := url.Parse(dbURL)
	if err != nil {
		return err
	}
	name := strings.TrimPrefix(u.Path, "/")
	u.Path = "/postgres"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return fmt.Errorf("stack: drop %s: %w", name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("stack: drop %s: %w", name, err)
	}
	return nil
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on right now.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// CustomerTokens gets an access token for each customer id from h, a few
// sign-ins at a time (each is a whole authorization-code + PKCE flow), for
// load that places orders as many customers.
func CustomerTokens(ctx context.Context, h *authtest.Hydra, customers []string) (map[string]string, error) {
	out := make(map[string]string, len(customers))
	var mu sync.Mutex
	var errs []error
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, c := range customers {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			tok, err := h.CustomerToken(ctx, c)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("token of %s: %w", c, err))
				return
			}
			out[c] = tok
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, fmt.Errorf("%d of %d customer tokens failed, first: %w", len(errs), len(customers), errs[0])
	}
	return out, nil
}
