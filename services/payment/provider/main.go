// Command provider runs the simulated external card processor that the
// payment service charges over HTTP. Its charges and refunds live in its own
// Postgres database (migrated on start-up), so a restart loses none; its
// latency, error rate and outages are set at start-up from the environment
// and changed at run time through PUT /admin/config.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/pkg/env"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/telemetry"
	"github.com/orderflow/orderflow/pkg/web"
	"github.com/orderflow/orderflow/services/payment/internal/provider"
)

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "provider:", err)
		os.Exit(1)
	}
}

type config struct {
	addr        string
	databaseURL string
	maxConns    int
	apiKey      string
	logLevel    string
	sim         provider.Config
}

func readConfig(getenv func(string) string) (config, error) {
	r := env.New(getenv)
	c := config{
		addr:        r.String("PROVIDER_ADDR", ":8090"),
		databaseURL: r.String("PROVIDER_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/provider?sslmode=disable"),
		maxConns:    r.Int("PROVIDER_DB_MAX_CONNS", 10),
		apiKey:      r.String("PROVIDER_API_KEY", ""),
		logLevel:    r.String("LOG_LEVEL", "info"),
		sim: provider.Config{
			LatencyMS: r.Int("PROVIDER_LATENCY_MS", 0),
			ErrorRate: r.Float("PROVIDER_ERROR_RATE", 0),
			Outage:    r.Bool("PROVIDER_OUTAGE", false),
		},
	}
	if err := r.Err(); err != nil {
		return c, err
	}
	if problems := c.sim.Validate(); len(problems) > 0 {
		var msgs []string
		for field, p := range problems {
			msgs = append(msgs, field+" "+p)
		}
		return c, fmt.Errorf("bad provider settings: %s", strings.Join(msgs, "; "))
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
	log := telemetry.NewLogger(stdout, "provider", cfg.logLevel)
	log.InfoContext(ctx, "starting", "addr", cfg.addr, "database_url", postgres.Redact(cfg.databaseURL),
		"db_max_conns", cfg.maxConns, "api_key_set", cfg.apiKey != "",
		"latency_ms", cfg.sim.LatencyMS, "error_rate", cfg.sim.ErrorRate, "outage", cfg.sim.Outage)
	tel, err := telemetry.New(ctx, "provider", getenv)
	if err != nil {
		return err
	}
	defer tel.Close(ctx, log)

	pool, err := postgres.Open(ctx, cfg.databaseURL, cfg.maxConns, postgres.WithTracer(tel.PgxTracer("provider")))
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := tel.ObservePool(pool, "provider"); err != nil {
		return err
	}
	fsys, err := migrations.For("provider")
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if err := postgres.Migrate(ctx, pool, fsys); err != nil {
		return err
	}

	sim := provider.NewSimulator(cfg.sim, provider.NewStore(pool))
	srv := web.NewServer(cfg.addr, tel.Handler(provider.NewHandler(log, sim, cfg.apiKey)), log)
	// A simulated latency can reach 60 s; the write timeout must not cut it.
	srv.WriteTimeout = time.Duration(provider.MaxLatencyMS)*time.Millisecond + 10*time.Second
	// Request contexts end with ctx, so a shutdown cuts simulated latency
	// short (charging nothing) instead of waiting out the grace period.
	srv.BaseContext = func(net.Listener) context.Context { return ctx }
	return web.Serve(ctx, srv, log, 10*time.Second)
}
