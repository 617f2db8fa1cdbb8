// Command order serves Orderflow's orders API: it takes orders under
// idempotency keys, runs the reserve → pay → confirm saga against inventory
// and payment, and publishes order events to SQS through an outbox.
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

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/pkg/auth"
	"github.com/orderflow/orderflow/pkg/env"
	"github.com/orderflow/orderflow/pkg/queue"
	"github.com/orderflow/orderflow/pkg/ratelimit"
	"github.com/orderflow/orderflow/pkg/redisconn"
	"github.com/orderflow/orderflow/pkg/resilience"
	"github.com/orderflow/orderflow/pkg/retention"
	"github.com/orderflow/orderflow/pkg/startup"
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

// config is everything order reads from its environment, read by
// readConfig and logged at start-up by LogValue.
type config struct {
	startup.Config
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
	sqs          queue.Config
	redisURL     string
	rateLimit    int
	rateBurst    int
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

// readConfig reads the environment, then the flags in args (local
// overrides), and reports every bad setting at once.
func readConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	r := env.New(getenv)
	cfg := config{
		Config: startup.Config{
			Service:     "order",
			Database:    "orders",
			Addr:        r.String("ORDER_ADDR", ":8080"),
			DatabaseURL: r.String("ORDER_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/orders?sslmode=disable"),
			DBMaxConns:  r.Int("ORDER_DB_MAX_CONNS", 20),
			LogLevel:    r.String("LOG_LEVEL", "info"),
		},
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
		sqs:              queue.ReadConfig(getenv),
		// Rate limits are per caller (token subject, else IP), shared by every
		// replica through Redis; 0 turns them off.
		redisURL:      r.String("ORDER_REDIS_URL", "redis://127.0.0.1:6379/0"),
		rateLimit:     r.Int("ORDER_RATE_LIMIT", 50),
		rateBurst:     r.Int("ORDER_RATE_BURST", 100),
		shutdownDrain: r.Duration("SHUTDOWN_DRAIN", 0),
		// A refund or release that keeps failing is retried after at most
		// 1s, 2s, 4s… (drawn at random below that), at most 5 minutes
		// apart, and parked for an operator after 10 failed attempts.
		compensationBackoff:     r.Duration("ORDER_COMPENSATION_BACKOFF", time.Second),
		compensationMaxBackoff:  r.Duration("ORDER_COMPENSATION_MAX_BACKOFF", 5*time.Minute),
		compensationMaxAttempts: r.Int("ORDER_COMPENSATION_MAX_ATTEMPTS", 10),
	}
	cfg.downstream = resilience.ReadPolicy(r, "ORDER", cfg.callTimeout)
	var authErr, proxyErr, telErr error
	cfg.auth, authErr = auth.ReadConfig(getenv)
	cfg.trustedProxies, proxyErr = web.ParsePrefixes(r.String("TRUSTED_PROXIES", ""))
	cfg.Telemetry, telErr = telemetry.ReadConfig("order", getenv)
	errs := append([]error{r.Err(), authErr, proxyErr, telErr}, cfg.validate()...)
	if err := errors.Join(append(errs, cfg.ParseFlags(args, stderr))...); err != nil {
		return config{}, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

// validate reports every setting out of range.
func (c config) validate() []error {
	errs := []error{c.downstream.Validate("ORDER")}
	if c.rateLimit < 0 || c.rateBurst < 0 {
		errs = append(errs, errors.New("ORDER_RATE_LIMIT and ORDER_RATE_BURST must be >= 0"))
	}
	if c.DBMaxConns < 1 {
		errs = append(errs, errors.New("ORDER_DB_MAX_CONNS must be at least 1"))
	}
	for name, d := range map[string]time.Duration{
		"ORDER_CALL_TIMEOUT": c.callTimeout, "ORDER_REQUEST_TIMEOUT": c.requestTimeout, "ORDER_READ_TIMEOUT": c.readTimeout,
		"ORDER_RECOVERY_INTERVAL": c.recoveryInterval, "ORDER_COMPENSATION_BACKOFF": c.compensationBackoff,
	} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", name))
		}
	}
	if c.compensationMaxBackoff < c.compensationBackoff {
		errs = append(errs, errors.New("ORDER_COMPENSATION_MAX_BACKOFF must be at least ORDER_COMPENSATION_BACKOFF"))
	}
	if c.compensationMaxAttempts < 1 {
		errs = append(errs, errors.New("ORDER_COMPENSATION_MAX_ATTEMPTS must be at least 1"))
	}
	// Budgets nest (docs/patterns/resilience.md, "Time budgets"): a call
	// with all its retries and backoffs fits inside the saga, so the saga's
	// deadline never cuts the last attempt short.
	if b := c.downstream.Budget(); b >= c.requestTimeout {
		errs = append(errs, fmt.Errorf("ORDER_REQUEST_TIMEOUT (%s) must be longer than a call with its retries "+
			"(%s: (ORDER_RETRY_MAX+1) × ORDER_CALL_TIMEOUT + ORDER_RETRY_MAX × 1.25 × ORDER_RETRY_MAX_BACKOFF)",
			c.requestTimeout, b))
	}
	// A saga younger than its own deadline must never look dead.
	if c.recoveryAfter <= c.requestTimeout {
		errs = append(errs, errors.New("ORDER_RECOVERY_AFTER must be longer than ORDER_REQUEST_TIMEOUT"))
	}
	return errs
}

// LogValue is the configuration as the start-up log shows it: URLs without
// their passwords, the client secret masked.
func (c config) LogValue() slog.Value {
	p := c.downstream
	return slog.GroupValue(
		slog.String("addr", c.Addr), slog.String("database_url", env.RedactURL(c.DatabaseURL)),
		slog.Int("db_max_conns", c.DBMaxConns),
		slog.String("inventory_url", c.inventoryURL), slog.String("payment_url", c.paymentURL),
		slog.String("call_timeout", c.callTimeout.String()), slog.String("request_timeout", c.requestTimeout.String()),
		slog.String("read_timeout", c.readTimeout.String()),
		slog.String("recovery_interval", c.recoveryInterval.String()), slog.String("recovery_after", c.recoveryAfter.String()),
		slog.String("compensation_backoff", c.compensationBackoff.String()),
		slog.String("compensation_max_backoff", c.compensationMaxBackoff.String()),
		slog.Int("compensation_max_attempts", c.compensationMaxAttempts),
		slog.String("attempt_timeout", p.Timeout.String()), slog.Any("breaker_failure_threshold", p.FailureThreshold),
		slog.Any("breaker_window", p.Window), slog.String("breaker_delay", p.Delay.String()),
		slog.Any("breaker_success_threshold", p.SuccessThreshold), slog.Int("retry_max", p.MaxRetries),
		slog.String("retry_backoff", p.Backoff.String()), slog.String("retry_max_backoff", p.MaxBackoff.String()),
		slog.Any("bulkhead", p.MaxConcurrent),
		slog.String("invoice_queue", c.invoiceQueue), slog.String("email_queue", c.emailQueue),
		slog.String("sqs_endpoint", c.sqs.Endpoint), slog.String("sqs_region", c.sqs.Region),
		slog.String("redis_url", env.RedactURL(c.redisURL)),
		slog.Int("rate_limit", c.rateLimit), slog.Int("rate_burst", c.rateBurst),
		slog.String("auth_issuer", c.auth.Issuer), slog.String("auth_audience", c.auth.Audience),
		slog.String("auth_cache_ttl", c.auth.CacheTTL.String()),
		slog.String("trusted_proxies", fmt.Sprint(c.trustedProxies)),
		slog.String("client_id", c.clientID), slog.String("client_secret", env.Masked),
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
	sqsClient, err := queue.NewClient(ctx, cfg.sqs)
	if err != nil {
		return err
	}
	rdb, err := redisconn.Open(cfg.redisURL, 0)
	if err != nil {
		return err
	}
	defer rdb.Close()
	store := order.NewStore(pool)
	svc, err := newService(cfg, tel, store, log)
	if err != nil {
		return err
	}
	queues := []string{cfg.invoiceQueue, cfg.emailQueue}
	relay := outbox.NewRelay(pool, sqsClient, queues, log, outbox.WithTracerProvider(tel.Tracer))
	handler, err := newHandler(cfg, tel, svc, rdb, map[string]web.Check{"postgres": store.Ping, "sqs": relay.Check}, log)
	if err != nil {
		return err
	}
	if err := errors.Join(tel.InstrumentRedis(rdb),
		outbox.ObserveLag(pool, tel.MeterFor("orderflow/outbox"))); err != nil {
		return err
	}

	return web.ListenAndServe(ctx, cfg.Addr, cfg.shutdownDrain,
		tel.Middleware(web.ClientAddr(cfg.trustedProxies)(handler)), log,
		func(ctx context.Context) { svc.RunRecovery(ctx, cfg.recoveryInterval) },
		func(ctx context.Context) { relay.Run(ctx, 200*time.Millisecond) },
		func(ctx context.Context) {
			_ = queue.WatchDepth(ctx, tel.MeterFor("orderflow/queue"), sqsClient, queues, 5*time.Second)
		},
		func(ctx context.Context) { retention.Run(ctx, retentionInterval, log, retentionJobs(store, pool)...) })
}

// retentionJobs are the purges of order's rows past their use: idempotency
// keys past their replay window, outbox rows long since published.
func retentionJobs(store *order.Store, pool *pgxpool.Pool) []retention.Job {
	return []retention.Job{
		{Name: "idempotency_keys", Keep: order.KeyRetention, Delete: store.PurgeKeys},
		{Name: "outbox", Keep: outboxRetention, Delete: func(ctx context.Context, before time.Time, limit int) (int64, error) {
			return outbox.Purge(ctx, pool, before, limit)
		}},
	}
}

// newService builds the order service, instrumented, over its downstream
// clients. One set of failsafe-go policies per downstream (timeout per
// attempt, breaker, bulkhead, retries for idempotent calls), built once and
// shared by the sagas, cancels and the recovery loop: a breaker must see
// all the traffic to its dependency.
func newService(cfg config, tel *telemetry.Telemetry, store *order.Store, log *slog.Logger) (*order.Service, error) {
	transport := resilience.NewTransport()
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
	resilienceMeter := tel.MeterFor("orderflow/resilience")
	if err := errors.Join(inventoryGuard.Instrument(resilienceMeter), paymentGuard.Instrument(resilienceMeter)); err != nil {
		return nil, err
	}
	// The policies bound each attempt; CallTimeout is only the backstop of a
	// whole call with its retries. The request keeps its deadline.
	svcCfg := order.Config{CallTimeout: cfg.downstream.Budget(), RequestTimeout: cfg.requestTimeout,
		ReadTimeout: cfg.readTimeout, RecoveryAfter: cfg.recoveryAfter,
		CompensationBackoff: cfg.compensationBackoff, CompensationMaxBackoff: cfg.compensationMaxBackoff,
		CompensationMaxAttempts: cfg.compensationMaxAttempts}
	svc := order.NewService(store,
		order.NewInventoryClient(cfg.inventoryURL, inventoryGuard),
		order.NewPaymentClient(cfg.paymentURL, paymentGuard),
		svcCfg, log)
	if err := svc.Instrument(tel.MeterFor("orderflow/order")); err != nil {
		return nil, err
	}
	return svc, nil
}

// newHandler is the HTTP API behind token verification and the per-caller
// rate limit (Redis, shared by the replicas), with /metrics among its
// routes; the limiter exports its own fail-open counter.
func newHandler(cfg config, tel *telemetry.Telemetry, svc *order.Service, rdb *redis.Client, ready map[string]web.Check, log *slog.Logger) (http.Handler, error) {
	limit := ratelimit.NewLimiter(rdb, "order", ratelimit.PerSecond(cfg.rateLimit, cfg.rateBurst), log)
	if err := limit.Instrument(tel.MeterFor("orderflow/ratelimit")); err != nil {
		return nil, err
	}
	verifier, err := auth.NewVerifier(cfg.auth, &http.Client{Timeout: 5 * time.Second}, log)
	if err != nil {
		return nil, err
	}
	return order.NewHandler(log, svc, ready, tel.MetricsHandler(), verifier.Authenticate, limit.Handler), nil
}
