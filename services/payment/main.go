// Command payment runs the payment service: card captures and refunds through
// the simulated external provider, made safe to retry with Idempotency-Keys.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/pkg/env"
	"github.com/orderflow/orderflow/pkg/postgres"
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
	adminToken      string
	logLevel        string
}

func readConfig(getenv func(string) string) (config, error) {
	r := env.New(getenv)
	c := config{
		addr:            r.String("PAYMENT_ADDR", ":8082"),
		databaseURL:     r.String("PAYMENT_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/payments?sslmode=disable"),
		maxConns:        r.Int("PAYMENT_DB_MAX_CONNS", 20),
		providerURL:     r.String("PAYMENT_PROVIDER_URL", "http://127.0.0.1:8090"),
		providerTimeout: r.Duration("PAYMENT_PROVIDER_TIMEOUT", 3*time.Second),
		adminToken:      r.String("ADMIN_TOKEN", ""),
		logLevel:        r.String("LOG_LEVEL", "info"),
	}
	if err := r.Err(); err != nil {
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
		"provider_timeout", cfg.providerTimeout.String(), "admin_token_set", cfg.adminToken != "")

	pool, err := postgres.Open(ctx, cfg.databaseURL, cfg.maxConns)
	if err != nil {
		return err
	}
	defer pool.Close()
	fsys, err := migrations.For("payment")
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if err := postgres.Migrate(ctx, pool, fsys); err != nil {
		return err
	}

	store := payment.NewStore(pool)
	client := payment.NewProviderClient(cfg.providerURL, cfg.providerTimeout)
	svc := payment.NewService(log, store, client, payment.Options{
		// A duplicate waits for the first request's provider call to end.
		MaxWait: cfg.providerTimeout + 2*time.Second,
		// A claim this old belongs to a request whose process died.
		StaleAfter: 2*cfg.providerTimeout + 30*time.Second,
	})
	srv := web.NewServer(cfg.addr, payment.NewHandler(log, svc, cfg.adminToken), log)
	return web.Serve(ctx, srv, log, 10*time.Second)
}
