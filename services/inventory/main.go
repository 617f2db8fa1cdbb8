// Command inventory serves Orderflow's catalogue and stock reservations.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/pkg/auth"
	"github.com/orderflow/orderflow/pkg/env"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/ratelimit"
	"github.com/orderflow/orderflow/pkg/redisconn"
	"github.com/orderflow/orderflow/pkg/retention"
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
	redisURL       string
	redisPoolSize  int
	cacheEnabled   bool
	cachePrefix    string
	cacheTTL       time.Duration
	rateLimit      int
	rateBurst      int
	auth           auth.Config
	trustedProxies []netip.Prefix
	logLevel       string
	// shutdownDrain is how long the process keeps serving after SIGTERM
	// with /readyz failing, so a load balancer stops routing to it first
	// (SHUTDOWN_DRAIN; 0 by default, make dev REPLICAS>1 sets 3s).
	shutdownDrain time.Duration
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
		redisURL:       r.String("INVENTORY_REDIS_URL", "redis://127.0.0.1:6379/0"),
		redisPoolSize:  r.Int("INVENTORY_REDIS_POOL_SIZE", 0),
		cacheEnabled:   r.Bool("INVENTORY_CACHE_ENABLED", true),
		cachePrefix:    r.String("INVENTORY_CACHE_PREFIX", "inventory:"),
		cacheTTL:       r.Duration("INVENTORY_CACHE_TTL", 30*time.Second),
		rateLimit:      r.Int("INVENTORY_RATE_LIMIT", 100),
		rateBurst:      r.Int("INVENTORY_RATE_BURST", 200),
		logLevel:       r.String("LOG_LEVEL", "info"),
		shutdownDrain:  r.Duration("SHUTDOWN_DRAIN", 0),
	}
	var authErr, proxyErr error
	cfg.auth, authErr = auth.ReadConfig(getenv)
	cfg.trustedProxies, proxyErr = web.ParsePrefixes(r.String("TRUSTED_PROXIES", ""))
	errs := []error{r.Err(), authErr, proxyErr}
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
	if _, err := redis.ParseURL(cfg.redisURL); err != nil {
		errs = append(errs, fmt.Errorf("INVENTORY_REDIS_URL: %w", err))
	}
	if cfg.redisPoolSize < 0 {
		errs = append(errs, errors.New("INVENTORY_REDIS_POOL_SIZE must not be negative (0 = 10 per CPU)"))
	}
	if cfg.cacheTTL < time.Second {
		errs = append(errs, errors.New("INVENTORY_CACHE_TTL must be at least 1s"))
	}
	if cfg.rateLimit < 0 || cfg.rateBurst < 0 {
		errs = append(errs, errors.New("INVENTORY_RATE_LIMIT and INVENTORY_RATE_BURST must not be negative (a limit of 0 disables limiting)"))
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
		"seed_products", cfg.seedProducts, "redis_url", redactRedis(cfg.redisURL), "redis_pool_size", cfg.redisPoolSize,
		"cache_enabled", cfg.cacheEnabled, "cache_prefix", cfg.cachePrefix, "cache_ttl", cfg.cacheTTL.String(),
		"rate_limit", cfg.rateLimit, "rate_burst", cfg.rateBurst,
		"auth_issuer", cfg.auth.Issuer, "auth_audience", cfg.auth.Audience, "auth_cache_ttl", cfg.auth.CacheTTL.String(),
		"trusted_proxies", fmt.Sprint(cfg.trustedProxies), "log_level", cfg.logLevel)
	tel, err := telemetry.New(ctx, "inventory", getenv)
	if err != nil {
		return err
	}
	defer tel.Close(ctx, log)

	pool, err := postgres.Open(ctx, cfg.databaseURL, cfg.dbMaxConns, postgres.WithTracer(tel.PgxTracer("inventory")))
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := tel.ObservePool(pool, "inventory"); err != nil {
		return err
	}
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
	// Redis failures degrade reads to Postgres and rate limiting to open.
	rdb, err := redisconn.Open(cfg.redisURL, cfg.redisPoolSize)
	if err != nil {
		return err
	}
	defer rdb.Close()
	if err := tel.InstrumentRedis(rdb); err != nil {
		return err
	}

	cache := inventory.NewCache(rdb, inventory.CacheConfig{Enabled: cfg.cacheEnabled, Prefix: cfg.cachePrefix, TTL: cfg.cacheTTL}, log)
	svc := inventory.NewService(store, cache, cfg.reservationTTL)
	var rateFailOpens atomic.Uint64
	limit := ratelimit.New(rdb, "inventory", ratelimit.PerSecond(cfg.rateLimit, cfg.rateBurst), log,
		func() { rateFailOpens.Add(1) })
	verifier, err := auth.NewVerifier(cfg.auth, &http.Client{Timeout: 5 * time.Second}, log)
	if err != nil {
		return err
	}
	handler := inventory.NewHandler(log, svc, verifier.Authenticate, limit)
	if err := errors.Join(
		tel.ObserveCounts("orderflow.cache.requests", "Product reads by cache result: hit (Redis), miss (Postgres, then cached), fallback (Postgres because Redis failed).",
			"result", func() map[string]uint64 {
				st := svc.CacheStats()
				return map[string]uint64{"hit": st.Hits, "miss": st.Misses, "fallback": st.Fallbacks}
			}),
		tel.ObserveCounts("orderflow.ratelimit.fail_open", "Requests let through unlimited because Redis failed.",
			"", func() map[string]uint64 { return map[string]uint64{"": rateFailOpens.Load()} }),
	); err != nil {
		return err
	}
	defer func() {
		st := svc.CacheStats()
		log.InfoContext(ctx, "stopped", "cache_hits", st.Hits, "cache_misses", st.Misses,
			"cache_fallbacks", st.Fallbacks, "rate_limit_fail_opens", rateFailOpens.Load())
	}()

	// Background loops stop once the server has drained and are waited for
	// before run returns, so the pool is never closed under a running sweep.
	loopCtx, cancelLoops := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancelLoops()
	wg.Go(func() { svc.RunSweeper(loopCtx, cfg.sweepInterval, log) })
	wg.Go(func() { cache.Retry(loopCtx, 500*time.Millisecond) })
	wg.Go(func() {
		retention.Run(loopCtx, time.Hour, log, retention.Job{Name: "reservations",
			Keep: inventory.ReservationRetention, Delete: store.PurgeReservations})
	})

	drain := web.NewDrainer(cfg.shutdownDrain, log)
	srv := web.NewServer(cfg.addr, drain.Handler(tel.Handler(web.ClientAddr(cfg.trustedProxies)(handler))), log)
	return web.Serve(drain.Context(ctx), srv, log, 10*time.Second)
}

// redactRedis hides a password in a Redis URL for the start-up log.
func redactRedis(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable)"
	}
	return u.Redacted()
}
