// Command inventory serves Orderflow's catalogue and stock reservations.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/pkg/env"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/telemetry"
	"github.com/orderflow/orderflow/pkg/web"
	"github.com/orderflow/orderflow/services/inventory/internal/inventory"
)

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "inventory:", err)
		os.Exit(1)
	}
}

// config is everything inventory reads from its environment.
type config struct {
	addr           string
	databaseURL    string
	dbMaxConns     int
	reservationTTL time.Duration
	sweepInterval  time.Duration
	seedProducts   int
	adminToken     string
	logLevel       string
}

func readConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	r := env.New(getenv)
	cfg := config{
		addr:           r.String("INVENTORY_ADDR", ":8081"),
		databaseURL:    r.String("INVENTORY_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/inventory?sslmode=disable"),
		dbMaxConns:     r.Int("INVENTORY_DB_MAX_CONNS", 20),
		reservationTTL: r.Duration("INVENTORY_RESERVATION_TTL", 15*time.Minute),
		sweepInterval:  r.Duration("INVENTORY_SWEEP_INTERVAL", 10*time.Second),
		seedProducts:   r.Int("INVENTORY_SEED_PRODUCTS", 0),
		adminToken:     r.String("ADMIN_TOKEN", ""),
		logLevel:       r.String("LOG_LEVEL", "info"),
	}
	errs := []error{r.Err()}
	if cfg.dbMaxConns < 1 {
		errs = append(errs, errors.New("INVENTORY_DB_MAX_CONNS must be at least 1"))
	}
	if cfg.reservationTTL <= 0 {
		errs = append(errs, errors.New("INVENTORY_RESERVATION_TTL must be positive"))
	}
	if cfg.sweepInterval <= 0 {
		errs = append(errs, errors.New("INVENTORY_SWEEP_INTERVAL must be positive"))
	}
	if cfg.seedProducts < 0 || cfg.seedProducts > 10_000_000 {
		errs = append(errs, errors.New("INVENTORY_SEED_PRODUCTS must be between 0 and 10000000"))
	}

	// Flags only override the environment for local runs.
	fs := flag.NewFlagSet("inventory", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.addr, "addr", cfg.addr, "listen address (overrides INVENTORY_ADDR)")
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
	log := telemetry.NewLogger(stdout, "inventory", cfg.logLevel)
	log.InfoContext(ctx, "starting",
		"addr", cfg.addr, "database_url", postgres.Redact(cfg.databaseURL), "db_max_conns", cfg.dbMaxConns,
		"reservation_ttl", cfg.reservationTTL.String(), "sweep_interval", cfg.sweepInterval.String(),
		"seed_products", cfg.seedProducts, "admin_token_set", cfg.adminToken != "", "log_level", cfg.logLevel)

	pool, err := postgres.Open(ctx, cfg.databaseURL, cfg.dbMaxConns)
	if err != nil {
		return err
	}
	defer pool.Close()
	fsys, err := migrations.For("inventory")
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if err := postgres.Migrate(ctx, pool, fsys); err != nil {
		return err
	}

	store := inventory.NewStore(pool)
	if cfg.seedProducts > 0 {
		n, err := store.Seed(ctx, cfg.seedProducts)
		if err != nil {
			return err
		}
		log.InfoContext(ctx, "seeded products", "requested", cfg.seedProducts, "inserted", n)
	}
	svc := inventory.NewService(store, cfg.reservationTTL)
	handler := inventory.NewHandler(log, svc, cfg.adminToken)

	// Background loops stop with ctx and are waited for before run returns,
	// so the pool is never closed under a running sweep.
	loopCtx, cancelLoops := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancelLoops()
	wg.Go(func() { svc.RunSweeper(loopCtx, cfg.sweepInterval, log) })

	srv := web.NewServer(cfg.addr, handler, log)
	return web.Serve(ctx, srv, log, 10*time.Second)
}
