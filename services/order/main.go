// Command order serves Orderflow's orders API: it takes orders under
// idempotency keys, runs the reserve → pay → confirm saga against inventory
// and payment, and publishes order events to SQS through an outbox.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/pkg/auth"
	"github.com/orderflow/orderflow/pkg/env"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/queue"
	"github.com/orderflow/orderflow/pkg/ratelimit"
	"github.com/orderflow/orderflow/pkg/redisconn"
	"github.com/orderflow/orderflow/pkg/resilience"
	"github.com/orderflow/orderflow/pkg/retention"
	"github.com/orderflow/orderflow/pkg/telemetry"
	"github.com/orderflow/orderflow/pkg/web"
	"github.com/orderflow/orderflow/services/order/internal/order"
	"github.com/orderflow/orderflow/services/order/internal/outbox"
)

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "order:", err)
		os.Exit(1)
	}
}

// config is everything order reads from its environment.
type config struct {
	addr             string
	databaseURL      string
	dbMaxConns       int
	inventoryURL     string
	paymentURL       string
	callTimeout      time.Duration
	requestTimeout   time.Duration
	readTimeout      time.Duration
	recoveryInterval time.Duration
	recoveryAfter    time.Duration
	invoiceQueue     string
	emailQueue       string
	auth             auth.Config
	trustedProxies   []netip.Prefix
	// clientID and clientSecret are order's OAuth 2.0 client: its calls to
	// inventory and payment carry client-credentials tokens.
	clientID     string
	clientSecret string
	logLevel     string
	sqs          queue.Config
	redisURL     string
	rateLimit    int
	rateBurst    int
	// notifyInline makes the invoice and e-mail inside the request through
	// notificationURL instead of leaving them to the queue workers: the
	// benchmark's "patterns off" configuration, never a production one.
	notifyInline    bool
	notificationURL string
	// shutdownDrain is how long the process keeps serving after SIGTERM
	// with /readyz failing, so the load balancer stops routing to it first
	// (SHUTDOWN_DRAIN; 0 by default, make dev REPLICAS>1 sets 3s).
	shutdownDrain time.Duration

	// downstream is the failsafe-go policy of each call to inventory and
	// payment: ORDER_BREAKER_*, ORDER_RETRY_*, ORDER_BULKHEAD, with
	// ORDER_CALL_TIMEOUT as the timeout of each attempt.
	downstream resilience.Policy

	// compensation* shape the recovery loop's retries of a failed
	// compensation (refund, release): full-jitter exponential backoff from
	// compensationBackoff up to compensationMaxBackoff, parked as needing
	// an operator after compensationMaxAttempts failed attempts.
	compensationBackoff     time.Duration
	compensationMaxBackoff  time.Duration
	compensationMaxAttempts int
}

// Rows that have done their job are deleted once an hour, in batches
// (pkg/retention): answered idempotency keys after order.KeyRetention,
// outbox rows a day after they were sent (the queue has the event).
const (
	retentionInterval = time.Hour
	outboxRetention   = 24 * time.Hour
)

func readConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	r := env.New(getenv)
	cfg := config{
		addr:             r.String("ORDER_ADDR", ":8080"),
		databaseURL:      r.String("ORDER_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/orders?sslmode=disable"),
		dbMaxConns:       r.Int("ORDER_DB_MAX_CONNS", 20),
		inventoryURL:     r.String("ORDER_INVENTORY_URL", "http://127.0.0.1:8081"),
		paymentURL:       r.String("ORDER_PAYMENT_URL", "http://127.0.0.1:8082"),
		callTimeout:      r.Duration("ORDER_CALL_TIMEOUT", 4*time.Second),
		requestTimeout:   r.Duration("ORDER_REQUEST_TIMEOUT", 15*time.Second),
		readTimeout:      r.Duration("ORDER_READ_TIMEOUT", 5*time.Second),
		recoveryInterval: r.Duration("ORDER_RECOVERY_INTERVAL", 5*time.Second),
		recoveryAfter:    r.Duration("ORDER_RECOVERY_AFTER", 30*time.Second),
		invoiceQueue:     r.String("ORDER_INVOICE_QUEUE", "order-invoices"),
		emailQueue:       r.String("ORDER_EMAIL_QUEUE", "order-emails"),
		clientID:         r.String("ORDER_CLIENT_ID", "orderflow-order"),
		clientSecret:     r.Required("ORDER_CLIENT_SECRET"),
		logLevel:         r.String("LOG_LEVEL", "info"),
		sqs:              queue.ReadConfig(getenv),
		// Rate limits are per caller (token subject, else IP), shared by every
		// replica through Redis; 0 turns them off.
		redisURL:      r.String("ORDER_REDIS_URL", "redis://127.0.0.1:6379/0"),
		rateLimit:     r.Int("ORDER_RATE_LIMIT", 50),
		rateBurst:     r.Int("ORDER_RATE_BURST", 100),
		shutdownDrain: r.Duration("SHUTDOWN_DRAIN", 0),
		// Benchmark switch ("patterns off"); see config.notifyInline.
		notifyInline:    r.Bool("ORDER_NOTIFY_INLINE", false),
		notificationURL: r.String("ORDER_NOTIFICATION_URL", "http://127.0.0.1:8083"),
	}
	cfg.downstream = resilience.ReadPolicy(r, "ORDER", cfg.callTimeout)
	// A refund or release that keeps failing is retried after at most 1s,
	// 2s, 4s… (drawn at random below that), at most 5 minutes apart, and
	// parked for an operator after 10 failed attempts.
	cfg.compensationBackoff = r.Duration("ORDER_COMPENSATION_BACKOFF", time.Second)
	cfg.compensationMaxBackoff = r.Duration("ORDER_COMPENSATION_MAX_BACKOFF", 5*time.Minute)
	cfg.compensationMaxAttempts = r.Int("ORDER_COMPENSATION_MAX_ATTEMPTS", 10)
	var authErr, proxyErr error
	cfg.auth, authErr = auth.ReadConfig(getenv)
	cfg.trustedProxies, proxyErr = web.ParsePrefixes(r.String("TRUSTED_PROXIES", ""))
	errs := []error{r.Err(), cfg.downstream.Validate("ORDER"), authErr, proxyErr}
	if cfg.rateLimit < 0 || cfg.rateBurst < 0 {
		errs = append(errs, errors.New("ORDER_RATE_LIMIT and ORDER_RATE_BURST must be >= 0"))
	}
	if cfg.dbMaxConns < 1 {
		errs = append(errs, errors.New("ORDER_DB_MAX_CONNS must be at least 1"))
	}
	for name, d := range map[string]time.Duration{
		"ORDER_CALL_TIMEOUT": cfg.callTimeout, "ORDER_REQUEST_TIMEOUT": cfg.requestTimeout, "ORDER_READ_TIMEOUT": cfg.readTimeout,
		"ORDER_RECOVERY_INTERVAL": cfg.recoveryInterval, "ORDER_COMPENSATION_BACKOFF": cfg.compensationBackoff,
	} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", name))
		}
	}
	if cfg.compensationMaxBackoff < cfg.compensationBackoff {
		errs = append(errs, errors.New("ORDER_COMPENSATION_MAX_BACKOFF must be at least ORDER_COMPENSATION_BACKOFF"))
	}
	if cfg.compensationMaxAttempts < 1 {
		errs = append(errs, errors.New("ORDER_COMPENSATION_MAX_ATTEMPTS must be at least 1"))
	}
	// Budgets nest (docs/patterns/resilience.md, "Time budgets"): a call
	// with all its retries and backoffs fits inside the saga, so the saga's
	// deadline never cuts the last attempt short.
	if b := cfg.downstream.Budget(); b >= cfg.requestTimeout {
		errs = append(errs, fmt.Errorf("ORDER_REQUEST_TIMEOUT (%s) must be longer than a call with its retries "+
			"(%s: (ORDER_RETRY_MAX+1) × ORDER_CALL_TIMEOUT + ORDER_RETRY_MAX × 1.25 × ORDER_RETRY_MAX_BACKOFF)",
			cfg.requestTimeout, b))
	}
	// A saga younger than its own deadline must never look dead.
	if cfg.recoveryAfter <= cfg.requestTimeout {
		errs = append(errs, errors.New("ORDER_RECOVERY_AFTER must be longer than ORDER_REQUEST_TIMEOUT"))
	}

	// Flags only override the environment for local runs.
	fs := flag.NewFlagSet("order", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.addr, "addr", cfg.addr, "listen address (overrides ORDER_ADDR)")
	if len(args) > 0 {
		if err := fs.Parse(args[1:]); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return config{}, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	cfg, err := readConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := telemetry.NewLogger(stdout, "order", cfg.logLevel)
	log.InfoContext(ctx, "starting",
		"addr", cfg.addr, "database_url", postgres.Redact(cfg.databaseURL), "db_max_conns", cfg.dbMaxConns,
		"inventory_url", cfg.inventoryURL, "payment_url", cfg.paymentURL,
		"call_timeout", cfg.callTimeout.String(), "request_timeout", cfg.requestTimeout.String(),
		"recovery_interval", cfg.recoveryInterval.String(), "recovery_after", cfg.recoveryAfter.String(),
		"compensation_backoff", cfg.compensationBackoff.String(),
		"compensation_max_backoff", cfg.compensationMaxBackoff.String(),
		"compensation_max_attempts", cfg.compensationMaxAttempts,
		"invoice_queue", cfg.invoiceQueue, "email_queue", cfg.emailQueue,
		"sqs_endpoint", cfg.sqs.Endpoint, "sqs_region", cfg.sqs.Region,
		"auth_issuer", cfg.auth.Issuer, "auth_audience", cfg.auth.Audience, "auth_cache_ttl", cfg.auth.CacheTTL.String(),
		"trusted_proxies", fmt.Sprint(cfg.trustedProxies), "client_id", cfg.clientID, "client_secret", "***",
		"log_level", cfg.logLevel,
		"notify_inline", cfg.notifyInline, "notification_url", cfg.notificationURL)
	tel, err := telemetry.New(ctx, "order", getenv)
	if err != nil {
		return err
	}
	defer tel.Close(ctx, log)

	pool, err := postgres.Open(ctx, cfg.databaseURL, cfg.dbMaxConns, postgres.WithTracer(tel.PgxTracer("orders")))
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := tel.ObservePool(pool, "orders"); err != nil {
		return err
	}
	fsys, err := migrations.For("order")
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if err := postgres.Migrate(ctx, pool, fsys); err != nil {
		return err
	}
	sqsClient, err := queue.NewClient(ctx, cfg.sqs)
	if err != nil {
		return err
	}

	// One set of failsafe-go policies per downstream (timeout per attempt,
	// breaker, bulkhead, retries for idempotent calls), built once and
	// shared by the sagas, cancels and the recovery loop: a breaker must see
	// all the traffic to its dependency. The transport only pools
	// connections.
	transport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		MaxIdleConns:        200,
		MaxIdleConnsPerHost: 100,
		IdleConnTimeout:     90 * time.Second,
	}
	// Each downstream gets a token with only the scope it needs, from
	// Hydra's client-credentials grant, cached by x/oauth2 until a minute
	// before it expires. A token that cannot be had fails the call like a
	// dependency that is down: the breaker counts it.
	tokenClient := &http.Client{Timeout: 5 * time.Second, Transport: tel.Transport(transport)}
	withToken := func(scope string) http.RoundTripper {
		return auth.ClientTransport(cfg.auth.TokenURL, cfg.clientID, cfg.clientSecret, []string{scope},
			cfg.auth.Audience, tokenClient, tel.Transport(transport))
	}
	inventoryGuard := resilience.New("inventory", cfg.downstream, withToken(auth.ScopeReservations), log)
	paymentGuard := resilience.New("payment", cfg.downstream, withToken(auth.ScopePayments), log)
	if err := tel.ObserveDownstreams(inventoryGuard, paymentGuard); err != nil {
		return err
	}
	log.InfoContext(ctx, "downstream policies", "attempt_timeout", cfg.downstream.Timeout.String(),
		"breaker_failure_threshold", cfg.downstream.FailureThreshold, "breaker_window", cfg.downstream.Window,
		"breaker_delay", cfg.downstream.Delay.String(), "breaker_success_threshold", cfg.downstream.SuccessThreshold,
		"retry_max", cfg.downstream.MaxRetries, "retry_backoff", cfg.downstream.Backoff.String(),
		"retry_max_backoff", cfg.downstream.MaxBackoff.String(), "bulkhead", cfg.downstream.MaxConcurrent)
	store := order.NewStore(pool)
	// The policies bound each attempt; CallTimeout is only the backstop of a
	// whole call with its retries. The request keeps its deadline.
	svcCfg := order.Config{CallTimeout: cfg.downstream.Budget(), RequestTimeout: cfg.requestTimeout, ReadTimeout: cfg.readTimeout,
		RecoveryAfter:       cfg.recoveryAfter,
		CompensationBackoff: cfg.compensationBackoff, CompensationMaxBackoff: cfg.compensationMaxBackoff,
		CompensationMaxAttempts: cfg.compensationMaxAttempts}
	if cfg.notifyInline {
		log.WarnContext(ctx, "ORDER_NOTIFY_INLINE is on: invoices and e-mails are made inside the request")
		svcCfg.Notify = order.NewNotificationClient(cfg.notificationURL,
			&http.Client{Transport: withToken(auth.ScopeNotify)})
	}
	svc := order.NewService(store,
		order.NewInventoryClient(cfg.inventoryURL, inventoryGuard),
		order.NewPaymentClient(cfg.paymentURL, paymentGuard),
		svcCfg, log)
	if err := observeCompensations(tel.MeterFor("orderflow/order"), svc); err != nil {
		return err
	}
	relay := outbox.NewRelay(pool, sqsClient, []string{cfg.invoiceQueue, cfg.emailQueue}, log,
		outbox.WithTracerProvider(tel.Tracer))
	if err := outbox.ObserveLag(pool, tel.MeterFor("orderflow/outbox")); err != nil {
		return err
	}
	rdb, err := redisconn.Open(cfg.redisURL, 0)
	if err != nil {
		return err
	}
	defer rdb.Close()
	if err := tel.InstrumentRedis(rdb); err != nil {
		return err
	}
	var rateFailOpens atomic.Uint64
	limit := ratelimit.New(rdb, "order", ratelimit.PerSecond(cfg.rateLimit, cfg.rateBurst), log,
		func() { rateFailOpens.Add(1) })
	if err := tel.ObserveCounts("orderflow.ratelimit.fail_open", "Requests let through unlimited because Redis failed.",
		"", func() map[string]uint64 { return map[string]uint64{"": rateFailOpens.Load()} }); err != nil {
		return err
	}
	verifier, err := auth.NewVerifier(cfg.auth, &http.Client{Timeout: 5 * time.Second}, log)
	if err != nil {
		return err
	}
	handler := order.NewHandler(log, svc, map[string]web.Check{
		"postgres": store.Ping,
		"sqs":      relay.Check,
	}, verifier.Authenticate, limit)

	// Background loops stop once the server has drained and are waited for
	// before run returns, so the pool is never closed under a running loop.
	loopCtx, cancelLoops := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancelLoops()
	wg.Go(func() { svc.RunRecovery(loopCtx, cfg.recoveryInterval) })
	wg.Go(func() { relay.Run(loopCtx, 200*time.Millisecond) })
	wg.Go(func() {
		retention.Run(loopCtx, retentionInterval, log,
			retention.Job{Name: "idempotency_keys", Keep: order.KeyRetention, Delete: store.PurgeKeys},
			retention.Job{Name: "outbox", Keep: outboxRetention, Delete: func(ctx context.Context, before time.Time, limit int) (int64, error) {
				return outbox.Purge(ctx, pool, before, limit)
			}})
	})
	wg.Go(func() {
		_ = tel.WatchQueues(loopCtx, sqsClient, []string{cfg.invoiceQueue, cfg.emailQueue}, 5*time.Second)
	})

	drain := web.NewDrainer(cfg.shutdownDrain, log)
	srv := web.NewServer(cfg.addr, drain.Handler(tel.Handler(web.ClientAddr(cfg.trustedProxies)(
		sagaMetrics(tel.MeterFor("orderflow/order"))(handler)))), log)
	return web.Serve(drain.Context(ctx), srv, log, 10*time.Second)
}
