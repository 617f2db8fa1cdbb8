// Command inventory serves Orderflow's catalogue and stock reservations.
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

	"github.com/redis/go-redis/v9"

	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/pkg/auth"
	"github.com/orderflow/orderflow/pkg/env"
	"github.com/orderflow/orderflow/pkg/ratelimit"
	"github.com/orderflow/orderflow/pkg/redisconn"
	"github.com/orderflow/orderflow/pkg/retention"
	"github.com/orderflow/orderflow/pkg/startup"
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

// config is everything inventory reads from its environment, read by
// readConfig and logged at start-up by LogValue.
type config struct {
	startup.Config
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
	// shutdownDrain is how long the process keeps serving after SIGTERM
	// with /readyz failing, so a load balancer stops routing to it first
	// (SHUTDOWN_DRAIN; 0 by default, make dev REPLICAS>1 sets 3s).
	shutdownDrain time.Duration
}

// readConfig reads the environment, then the flags in args (local
// overrides), and reports every bad setting at once.
func readConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	r := env.New(getenv)
	cfg := config{
		Config: startup.Config{
			Service:     "inventory",
			Database:    "inventory",
			Addr:        r.String("INVENTORY_ADDR", ":8081"),
			DatabaseURL: r.String("INVENTORY_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/inventory?sslmode=disable"),
			DBMaxConns:  r.Int("INVENTORY_DB_MAX_CONNS", 20),
			LogLevel:    r.String("LOG_LEVEL", "info"),
		},
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
		shutdownDrain:  r.Duration("SHUTDOWN_DRAIN", 0),
	}
	var authErr, proxyErr, telErr error
	cfg.auth, authErr = auth.ReadConfig(getenv)
	cfg.trustedProxies, proxyErr = web.ParsePrefixes(r.String("TRUSTED_PROXIES", ""))
	cfg.Telemetry, telErr = telemetry.ReadConfig("inventory", getenv)
	errs := append([]error{r.Err(), authErr, proxyErr, telErr}, cfg.validate()...)
	if err := errors.Join(append(errs, cfg.ParseFlags(args, stderr))...); err != nil {
		return config{}, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

// validate reports every setting out of range.
func (c config) validate() []error {
	var errs []error
	if c.DBMaxConns < 1 {
		errs = append(errs, errors.New("INVENTORY_DB_MAX_CONNS must be at least 1"))
	}
	if c.reservationTTL <= 0 {
		errs = append(errs, errors.New("INVENTORY_RESERVATION_TTL must be positive"))
	}
	if c.sweepInterval <= 0 {
		errs = append(errs, errors.New("INVENTORY_SWEEP_INTERVAL must be positive"))
	}
	if c.seedProducts < 0 || c.seedProducts > 10_000_000 {
		errs = append(errs, errors.New("INVENTORY_SEED_PRODUCTS must be between 0 and 10000000"))
	}
	if _, err := redis.ParseURL(c.redisURL); err != nil {
		errs = append(errs, fmt.Errorf("INVENTORY_REDIS_URL: %w", err))
	}
	if c.redisPoolSize < 0 {
		errs = append(errs, errors.New("INVENTORY_REDIS_POOL_SIZE must not be negative (0 = 10 per CPU)"))
	}
	if c.cacheTTL < time.Second {
		errs = append(errs, errors.New("INVENTORY_CACHE_TTL must be at least 1s"))
	}
	if c.rateLimit < 0 || c.rateBurst < 0 {
		errs = append(errs, errors.New("INVENTORY_RATE_LIMIT and INVENTORY_RATE_BURST must not be negative (a limit of 0 disables limiting)"))
	}
	return errs
}

// LogValue is the configuration as the start-up log shows it: URLs without
// their passwords.
func (c config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("addr", c.Addr), slog.String("database_url", env.RedactURL(c.DatabaseURL)),
		slog.Int("db_max_conns", c.DBMaxConns),
		slog.String("reservation_ttl", c.reservationTTL.String()), slog.String("sweep_interval", c.sweepInterval.String()),
		slog.Int("seed_products", c.seedProducts),
		slog.String("redis_url", env.RedactURL(c.redisURL)), slog.Int("redis_pool_size", c.redisPoolSize),
		slog.Bool("cache_enabled", c.cacheEnabled), slog.String("cache_prefix", c.cachePrefix),
		slog.String("cache_ttl", c.cacheTTL.String()),
		slog.Int("rate_limit", c.rateLimit), slog.Int("rate_burst", c.rateBurst),
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
	log, tel := p.Log, p.Tel
	store := inventory.NewStore(p.Pool)
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
	cache := inventory.NewCache(rdb, inventory.CacheConfig{Enabled: cfg.cacheEnabled, Prefix: cfg.cachePrefix, TTL: cfg.cacheTTL}, log)
	svc := inventory.NewService(store, cache, cfg.reservationTTL)
	handler, stopped, err := newHandler(ctx, cfg, tel, svc, cache, rdb, log)
	if err != nil {
		return err
	}
	defer stopped()

	return web.ListenAndServe(ctx, cfg.Addr, cfg.shutdownDrain, tel.Middleware(web.ClientAddr(cfg.trustedProxies)(handler)), log,
		func(ctx context.Context) { svc.RunSweeper(ctx, cfg.sweepInterval, log) },
		func(ctx context.Context) { cache.Retry(ctx, 500*time.Millisecond) },
		func(ctx context.Context) {
			retention.Run(ctx, time.Hour, log, retention.Job{Name: "reservations",
				Keep: inventory.ReservationRetention, Delete: store.PurgeReservations})
		})
}

// newHandler is the HTTP API behind token verification and the per-caller
// rate limit (Redis, shared by the replicas), with /metrics among its
// routes; the cache and the limiter export their own counters, and stopped
// logs them when the process stops.
func newHandler(ctx context.Context, cfg config, tel *telemetry.Telemetry, svc *inventory.Service, cache *inventory.Cache, rdb *redis.Client, log *slog.Logger) (_ http.Handler, stopped func(), _ error) {
	limit := ratelimit.NewLimiter(rdb, "inventory", ratelimit.PerSecond(cfg.rateLimit, cfg.rateBurst), log)
	if err := errors.Join(
		tel.InstrumentRedis(rdb),
		cache.Instrument(tel.MeterFor("orderflow/inventory")),
		limit.Instrument(tel.MeterFor("orderflow/ratelimit")),
	); err != nil {
		return nil, nil, err
	}
	verifier, err := auth.NewVerifier(cfg.auth, &http.Client{Timeout: 5 * time.Second}, log)
	if err != nil {
		return nil, nil, err
	}
	stopped = func() {
		st := svc.CacheStats()
		log.InfoContext(context.WithoutCancel(ctx), "stopped", "cache_hits", st.Hits, "cache_misses", st.Misses,
			"cache_fallbacks", st.Fallbacks, "rate_limit_fail_opens", limit.FailOpens())
	}
	return inventory.NewHandler(log, svc, tel.MetricsHandler(), verifier.Authenticate, limit.Handler), stopped, nil
}
