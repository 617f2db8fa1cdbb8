// Command payment runs the payment service: card captures and refunds through
// the simulated external provider, made safe to retry with Idempotency-Keys.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/pkg/auth"
	"github.com/orderflow/orderflow/pkg/env"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/resilience"
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

type config struct {
	addr            string
	databaseURL     string
	maxConns        int
	providerURL     string
	providerTimeout time.Duration
	providerAPIKey  string
	auth            auth.Config
	trustedProxies  []netip.Prefix
	logLevel        string
	// shutdownDrain is how long the process keeps serving after SIGTERM
	// with /readyz failing, so a load balancer stops routing to it first
	// (SHUTDOWN_DRAIN; 0 by default).
	shutdownDrain time.Duration

	// provider is the failsafe-go policy of each call to the provider:
	// PAYMENT_BREAKER_*, PAYMENT_RETRY_*, PAYMENT_BULKHEAD, with
	// PAYMENT_PROVIDER_TIMEOUT as the timeout of each attempt.
	provider resilience.Policy
}

func readConfig(getenv func(string) string) (config, error) {
	r := env.New(getenv)
	c := config{
		addr:            r.String("PAYMENT_ADDR", ":8082"),
		databaseURL:     r.String("PAYMENT_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/payments?sslmode=disable"),
		maxConns:        r.Int("PAYMENT_DB_MAX_CONNS", 20),
		providerURL:     r.String("PAYMENT_PROVIDER_URL", "http://127.0.0.1:8090"),
		providerTimeout: r.Duration("PAYMENT_PROVIDER_TIMEOUT", 3*time.Second),
		providerAPIKey:  r.String("PAYMENT_PROVIDER_API_KEY", ""),
		logLevel:        r.String("LOG_LEVEL", "info"),
		shutdownDrain:   r.Duration("SHUTDOWN_DRAIN", 0),
	}
	c.provider = resilience.ReadPolicy(r, "PAYMENT", c.providerTimeout)
	var authErr, proxyErr error
	c.auth, authErr = auth.ReadConfig(getenv)
	c.trustedProxies, proxyErr = web.ParsePrefixes(r.String("TRUSTED_PROXIES", ""))
	if err := errors.Join(r.Err(), c.provider.Validate("PAYMENT"), authErr, proxyErr); err != nil {
		return c, err
	}
	if c.providerTimeout <= 0 {
		return c, fmt.Errorf("PAYMENT_PROVIDER_TIMEOUT must be positive")
	}
	return c, nil
}

func run(ctx context.Context, _ []string, getenv func(string) string, stdout, _ io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	cfg, err := readConfig(getenv)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := telemetry.NewLogger(stdout, "payment", cfg.logLevel)
	log.InfoContext(ctx, "starting", "addr", cfg.addr, "database_url", postgres.Redact(cfg.databaseURL),
		"db_max_conns", cfg.maxConns, "provider_url", cfg.providerURL,
		"provider_timeout", cfg.providerTimeout.String(), "provider_api_key_set", cfg.providerAPIKey != "",
		"auth_issuer", cfg.auth.Issuer, "auth_audience", cfg.auth.Audience, "auth_cache_ttl", cfg.auth.CacheTTL.String(),
		"trusted_proxies", fmt.Sprint(cfg.trustedProxies))
	tel, err := telemetry.New(ctx, "payment", getenv)
	if err != nil {
		return err
	}
	defer tel.Close(ctx, log)

	pool, err := postgres.Open(ctx, cfg.databaseURL, cfg.maxConns, postgres.WithTracer(tel.PgxTracer("payments")))
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := tel.ObservePool(pool, "payments"); err != nil {
		return err
	}
	fsys, err := migrations.For("payment")
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if err := postgres.Migrate(ctx, pool, fsys); err != nil {
		return err
	}

	store := payment.NewStore(pool)
	// The provider's policies are built once and shared by every request:
	// its breaker must see all the traffic to the provider.
	provider := resilience.New("provider", cfg.provider, tel.Transport(nil), log)
	if err := tel.ObserveDownstreams(provider); err != nil {
		return err
	}
	client := payment.NewGuardedProviderClient(cfg.providerURL, cfg.providerAPIKey, provider)
	svc := payment.NewService(log, store, client, payment.Options{
		// A duplicate waits for the first request's provider call, with
		// its retries, to end.
		MaxWait: cfg.provider.Budget() + 2*time.Second,
		// A claim this old belongs to a request whose process died.
		StaleAfter: 2*cfg.providerTimeout + 30*time.Second,
	})
	drain := web.NewDrainer(cfg.shutdownDrain, log)
	verifier, err := auth.NewVerifier(cfg.auth, &http.Client{Timeout: 5 * time.Second}, log)
	if err != nil {
		return err
	}
	handler := payment.NewHandler(log, svc, verifier.Authenticate)
	srv := web.NewServer(cfg.addr, drain.Handler(tel.Handler(web.ClientAddr(cfg.trustedProxies)(handler))), log)
	return web.Serve(drain.Context(ctx), srv, log, 10*time.Second)
}
