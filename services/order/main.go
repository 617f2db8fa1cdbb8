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
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/pkg/env"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/queue"
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
	recoveryInterval time.Duration
	recoveryAfter    time.Duration
	invoiceQueue     string
	emailQueue       string
	adminToken       string
	logLevel         string
	sqs              queue.Config
}

func readConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	r := env.New(getenv)
	cfg := config{
		addr:             r.String("ORDER_ADDR", ":8080"),
		databaseURL:      r.String("ORDER_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/orders?sslmode=disable"),
		dbMaxConns:       r.Int("ORDER_DB_MAX_CONNS", 20),
		inventoryURL:     r.String("ORDER_INVENTORY_URL", "http://127.0.0.1:8081"),
		paymentURL:       r.String("ORDER_PAYMENT_URL", "http://127.0.0.1:8082"),
		callTimeout:      r.Duration("ORDER_CALL_TIMEOUT", 5*time.Second),
		requestTimeout:   r.Duration("ORDER_REQUEST_TIMEOUT", 15*time.Second),
		recoveryInterval: r.Duration("ORDER_RECOVERY_INTERVAL", 5*time.Second),
		recoveryAfter:    r.Duration("ORDER_RECOVERY_AFTER", 30*time.Second),
		invoiceQueue:     r.String("ORDER_INVOICE_QUEUE", "order-invoices"),
		emailQueue:       r.String("ORDER_EMAIL_QUEUE", "order-emails"),
		adminToken:       r.String("ADMIN_TOKEN", ""),
		logLevel:         r.String("LOG_LEVEL", "info"),
		sqs:              queue.ReadConfig(getenv),
	}
	errs := []error{r.Err()}
	if cfg.dbMaxConns < 1 {
		errs = append(errs, errors.New("ORDER_DB_MAX_CONNS must be at least 1"))
	}
	for name, d := range map[string]time.Duration{
		"ORDER_CALL_TIMEOUT": cfg.callTimeout, "ORDER_REQUEST_TIMEOUT": cfg.requestTimeout,
		"ORDER_RECOVERY_INTERVAL": cfg.recoveryInterval,
	} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", name))
		}
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
		"invoice_queue", cfg.invoiceQueue, "email_queue", cfg.emailQueue,
		"sqs_endpoint", cfg.sqs.Endpoint, "sqs_region", cfg.sqs.Region,
		"admin_token_set", cfg.adminToken != "", "log_level", cfg.logLevel)

	pool, err := postgres.Open(ctx, cfg.databaseURL, cfg.dbMaxConns)
	if err != nil {
		return err
	}
	defer pool.Close()
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

	// Timeouts come from each call's context; the client only pools
	// connections to the two downstream services.
	httpClient := &http.Client{Transport: &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		MaxIdleConns:        200,
		MaxIdleConnsPerHost: 100,
		IdleConnTimeout:     90 * time.Second,
	}}
	store := order.NewStore(pool)
	svc := order.NewService(store,
		order.NewInventoryClient(cfg.inventoryURL, httpClient),
		order.NewPaymentClient(cfg.paymentURL, httpClient),
		order.Config{CallTimeout: cfg.callTimeout, RequestTimeout: cfg.requestTimeout, RecoveryAfter: cfg.recoveryAfter},
		log)
	relay := outbox.NewRelay(pool, sqsClient, []string{cfg.invoiceQueue, cfg.emailQueue}, log)
	handler := order.NewHandler(log, svc, map[string]web.Check{
		"postgres": store.Ping,
		"sqs":      relay.Check,
	})

	// Background loops stop with ctx and are waited for before run returns,
	// so the pool is never closed under a running loop.
	loopCtx, cancelLoops := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancelLoops()
	wg.Go(func() { svc.RunRecovery(loopCtx, cfg.recoveryInterval) })
	wg.Go(func() { relay.Run(loopCtx, 200*time.Millisecond) })

	srv := web.NewServer(cfg.addr, handler, log)
	return web.Serve(ctx, srv, log, 10*time.Second)
}
