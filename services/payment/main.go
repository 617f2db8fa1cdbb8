// Command payment runs the payment service: card captures and refunds through
// the simulated external provider, made safe to retry with Idempotency-Keys.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/pkg/auth"
	"github.com/orderflow/orderflow/pkg/env"
	"github.com/orderflow/orderflow/pkg/resilience"
	"github.com/orderflow/orderflow/pkg/retention"
	"github.com/orderflow/orderflow/pkg/startup"
	"github.com/orderflow/orderflow/pkg/telemetry"
	"github.com/orderflow/orderflow/pkg/web"
	"github.com/orderflow/orderflow/services/payment/internal/payment"
)

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "payment:", err)
		os.Exit(1)
	}
}

// config is everything payment reads from its environment, read by
// readConfig and logged at start-up by LogValue.
type config struct {
	startup.Config
	providerURL     string
	providerTimeout time.Duration
	providerAPIKey  string
	auth            auth.Config
	trustedProxies  []netip.Prefix
	// shutdownDrain is how long the process keeps serving after SIGTERM
	// with /readyz failing, so a load balancer stops routing to it first
	// (SHUTDOWN_DRAIN; 0 by default).
	shutdownDrain time.Duration

	// reconcileInterval is how often the reconciler settles unknown
	// payment intents (PAYMENT_RECONCILE_INTERVAL); reconcileAfter is the
	// grace period after which the provider's "no such charge" abandons an
	// intent (PAYMENT_RECONCILE_AFTER), longer than a provider call can last.
	reconcileInterval time.Duration
	reconcileAfter    time.Duration

	// provider is the failsafe-go policy of each call to the provider:
	// PAYMENT_BREAKER_*, PAYMENT_RETRY_*, PAYMENT_BULKHEAD, with
	// PAYMENT_PROVIDER_TIMEOUT as the timeout of each attempt.
	provider resilience.Policy
}

// Answered idempotency keys are deleted once an hour, in batches
// (pkg/retention), payment.KeyRetention after they were claimed.
const retentionInterval = time.Hour

// readConfig reads the environment, then the flags in args (local
// overrides), and reports every bad setting at once.
func readConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	r := env.New(getenv)
	cfg := config{
		Config: startup.Config{
			Service:     "payment",
			Database:    "payments",
			Addr:        r.String("PAYMENT_ADDR", ":8082"),
			DatabaseURL: r.String("PAYMENT_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/payments?sslmode=disable"),
			DBMaxConns:  r.Int("PAYMENT_DB_MAX_CONNS", 20),
			LogLevel:    r.String("LOG_LEVEL", "info"),
		},
		providerURL:       r.String("PAYMENT_PROVIDER_URL", "http://127.0.0.1:8090"),
		providerTimeout:   r.Duration("PAYMENT_PROVIDER_TIMEOUT", time.Second),
		providerAPIKey:    r.String("PAYMENT_PROVIDER_API_KEY", ""),
		shutdownDrain:     r.Duration("SHUTDOWN_DRAIN", 0),
		reconcileInterval: r.Duration("PAYMENT_RECONCILE_INTERVAL", 10*time.Second),
		reconcileAfter:    r.Duration("PAYMENT_RECONCILE_AFTER", time.Minute),
	}
	// A charge with its retries must fit inside the order service's attempt
	// (ORDER_CALL_TIMEOUT, 4 s): 3 × 1 s + 2 × 1.25 × 250 ms = 3.6 s.
	policy := resilience.DefaultPolicy(cfg.providerTimeout)
	policy.MaxBackoff = 250 * time.Millisecond
	cfg.provider = resilience.ReadPolicyFrom(r, "PAYMENT", policy)
	var authErr, proxyErr, telErr error
	cfg.auth, authErr = auth.ReadConfig(getenv)
	cfg.trustedProxies, proxyErr = web.ParsePrefixes(r.String("TRUSTED_PROXIES", ""))
	cfg.Telemetry, telErr = telemetry.ReadConfig("payment", getenv)
	errs := append([]error{r.Err(), authErr, proxyErr, telErr}, cfg.validate()...)
	if err := errors.Join(append(errs, cfg.ParseFlags(args, stderr))...); err != nil {
		return config{}, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

// validate reports every setting out of range.
func (c config) validate() []error {
	errs := []error{c.provider.Validate("PAYMENT")}
	if c.DBMaxConns < 1 {
		errs = append(errs, errors.New("PAYMENT_DB_MAX_CONNS must be at least 1"))
	}
	for name, d := range map[string]time.Duration{
		"PAYMENT_PROVIDER_TIMEOUT": c.providerTimeout, "PAYMENT_RECONCILE_INTERVAL": c.reconcileInterval,
	} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", name))
		}
	}
	// Budgets nest (docs/patterns/resilience.md, "Time budgets").
	if b := c.provider.Budget(); b >= payment.RequestTimeout {
		errs = append(errs, fmt.Errorf("a provider call with its retries (%s) must fit inside a payment request (%s): "+
			"lower PAYMENT_PROVIDER_TIMEOUT, PAYMENT_RETRY_MAX or PAYMENT_RETRY_MAX_BACKOFF", b, payment.RequestTimeout))
	}
	// A charge attempt still under way when its intent is declared
	// abandoned could land after it, unrefunded.
	if c.reconcileAfter <= c.provider.Budget() {
		errs = append(errs, fmt.Errorf("PAYMENT_RECONCILE_AFTER (%s) must be longer than a provider call with its retries (%s)",
			c.reconcileAfter, c.provider.Budget()))
	}
	return errs
}

// LogValue is the configuration as the start-up log shows it: URLs without
// their passwords, the provider's API key masked.
func (c config) LogValue() slog.Value {
	p := c.provider
	apiKey := ""
	if c.providerAPIKey != "" {
		apiKey = env.Masked
	}
	return slog.GroupValue(
		slog.String("addr", c.Addr), slog.String("database_url", env.RedactURL(c.DatabaseURL)),
		slog.Int("db_max_conns", c.DBMaxConns),
		slog.String("provider_url", c.providerURL), slog.String("provider_api_key", apiKey),
		slog.String("attempt_timeout", p.Timeout.String()), slog.Any("breaker_failure_threshold", p.FailureThreshold),
		slog.Any("breaker_window", p.Window), slog.String("breaker_delay", p.Delay.String()),
		slog.Any("breaker_success_threshold", p.SuccessThreshold), slog.Int("retry_max", p.MaxRetries),
		slog.String("retry_backoff", p.Backoff.String()), slog.String("retry_max_backoff", p.MaxBackoff.String()),
		slog.Any("bulkhead", p.MaxConcurrent),
		slog.String("reconcile_interval", c.reconcileInterval.String()),
		slog.String("reconcile_after", c.reconcileAfter.String()),
		slog.String("auth_issuer", c.auth.Issuer), slog.String("auth_audience", c.auth.Audience),
		slog.String("auth_cache_ttl", c.auth.CacheTTL.String()),
		slog.String("trusted_proxies", fmt.Sprint(c.trustedProxies)),
		slog.String("shutdown_drain", c.shutdownDrain.String()), slog.String("log_level", c.LogLevel),
		slog.String("otel_endpoint", c.Telemetry.Endpoint))
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	cfg, err := readConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	p, err := startup.Start(ctx, stdout, cfg.Config, cfg, migrations.For)
	if err != nil {
		return err
	}
	defer p.Close(ctx)
	log, tel, pool := p.Log, p.Tel, p.Pool
	store := payment.NewStore(pool)
	svc, err := newService(cfg, tel, store, log)
	if err != nil {
		return err
	}
	verifier, err := auth.NewVerifier(cfg.auth, &http.Client{Timeout: 5 * time.Second}, log)
	if err != nil {
		return err
	}
	handler := payment.NewHandler(log, svc, map[string]web.Check{"postgres": store.Ping}, tel.MetricsHandler(), verifier.Authenticate)

	return web.ListenAndServe(ctx, cfg.Addr, cfg.shutdownDrain, tel.Middleware(web.ClientAddr(cfg.trustedProxies)(handler)), log,
		func(ctx context.Context) { svc.RunReconciler(ctx, cfg.reconcileInterval) },
		func(ctx context.Context) {
			retention.Run(ctx, retentionInterval, log,
				retention.Job{Name: "idempotency_keys", Keep: payment.KeyRetention, Delete: store.PurgeKeys})
		})
}

// newService builds the payment service over its provider client. The
// provider's policies are built once and shared by every request and the
// reconciler: its breaker must see all the traffic to the provider.
func newService(cfg config, tel *telemetry.Telemetry, store *payment.Store, log *slog.Logger) (*payment.Service, error) {
	guard := resilience.New("provider", cfg.provider, tel.Transport(resilience.NewTransport()), log)
	svc := payment.NewService(store, payment.NewProviderClient(cfg.providerURL, cfg.providerAPIKey, guard), payment.Config{
		// A duplicate waits for the first request's provider call, with
		// its retries, to end.
		MaxWait: cfg.provider.Budget() + 2*time.Second,
		// A claim this old belongs to a request whose process died.
		StaleAfter:  2*cfg.providerTimeout + 30*time.Second,
		SettleAfter: cfg.reconcileAfter,
	}, log)
	if err := errors.Join(guard.Instrument(tel.MeterFor("orderflow/resilience")),
		svc.Instrument(tel.MeterFor("orderflow/payment"))); err != nil {
		return nil, err
	}
	return svc, nil
}
