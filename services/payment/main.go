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
	"sync"
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

	// reconcileInterval is how often the reconciler settles unknown
	// payment intents and deletes old idempotency keys
	// (PAYMENT_RECONCILE_INTERVAL); reconcileAfter is the grace period
	// after which the provider's "no such charge" abandons an intent
	// (PAYMENT_RECONCILE_AFTER), longer than a provider call can last.
	reconcileInterval time.Duration
	reconcileAfter    time.Duration

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
		providerTimeout: r.Duration("PAYMENT_PROVIDER_TIMEOUT", time.Second),
		providerAPIKey:  r.String("PAYMENT_PROVIDER_API_KEY", ""),
		logLevel:        r.String("LOG_LEVEL", "info"),
		shutdownDrain:   r.Duration("SHUTDOWN_DRAIN", 0),

		reconcileInterval: r.Duration("PAYMENT_RECONCILE_INTERVAL", 10*time.Second),
		reconcileAfter:    r.Duration("PAYMENT_RECONCILE_AFTER", time.Minute),
	}
	// A charge with its retries must fit inside the order service's attempt
	// (ORDER_CALL_TIMEOUT, 4 s): 3 × 1 s + 2 × 1.25 × 250 ms = 3.6 s.
	policy := resilience.DefaultPolicy(c.providerTimeout)
	policy.MaxBackoff = 250 * time.Millisecond
	c.provider = resilience.ReadPolicyFrom(r, "PAYMENT", policy)
	var authErr, proxyErr error
	c.auth, authErr = auth.ReadConfig(getenv)
	c.trustedProxies, proxyErr = web.ParsePrefixes(r.String("TRUSTED_PROXIES", ""))
	if err := errors.Join(r.Err(), c.provider.Validate("PAYMENT"), authErr, proxyErr); err != nil {
		return c, err
	}
	if c.providerTimeout <= 0 {
		return c, fmt.Errorf("PAYMENT_PROVIDER_TIMEOUT must be positive")
	}
	if c.reconcileInterval <= 0 {
		return c, fmt.Errorf("PAYMENT_RECONCILE_INTERVAL must be positive")
	}
	if b := c.provider.Budget(); b >= payment.RequestTimeout {
		return c, fmt.Errorf("a provider call with its retries (%s) must fit inside a payment request (%s): "+
			"lower PAYMENT_PROVIDER_TIMEOUT, PAYMENT_RETRY_MAX or PAYMENT_RETRY_MAX_BACKOFF", b, payment.RequestTimeout)
	}
	// A charge attempt still under way when its intent is declared
	// abandoned could land after it, unrefunded.
	if c.reconcileAfter <= c.provider.Budget() {
		return c, fmt.Errorf("PAYMENT_RECONCILE_AFTER (%s) must be longer than a provider call with its retries (%s)",
			c.reconcileAfter, c.provider.Budget())
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
		"trusted_proxies", fmt.Sprint(cfg.trustedProxies),
		"reconcile_interval", cfg.reconcileInterval.String(), "reconcile_after", cfg.reconcileAfter.String())
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
		StaleAfter:  2*cfg.providerTimeout + 30*time.Second,
		SettleAfter: cfg.reconcileAfter,
	})
	if err := tel.ObserveCounts("orderflow.payment.intents.settled",
		"Payment intents whose outcome was unknown, settled with the provider by key, by outcome: captured (the charge was found and recorded), abandoned (no charge: nothing to refund), unreachable (the look-up failed; tried again).",
		"outcome", svc.SettledCounts); err != nil {
		return err
	}
	drain := web.NewDrainer(cfg.shutdownDrain, log)
	verifier, err := auth.NewVerifier(cfg.auth, &http.Client{Timeout: 5 * time.Second}, log)
	if err != nil {
		return err
	}
	handler := payment.NewHandler(log, svc, verifier.Authenticate)

	// The reconciler stops once the server has drained and is waited for
	// before run returns, so the pool is never closed under it.
	loopCtx, cancelLoops := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancelLoops()
	wg.Go(func() { svc.RunReconciler(loopCtx, cfg.reconcileInterval) })

	srv := web.NewServer(cfg.addr, drain.Handler(tel.Handler(web.ClientAddr(cfg.trustedProxies)(handler))), log)
	return web.Serve(drain.Context(ctx), srv, log, 10*time.Second)
}
