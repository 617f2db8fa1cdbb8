// Command identity runs the login and consent app of Orderflow's OpenID
// Connect provider (Ory Hydra): customer sign-up, the login form that checks
// e-mail and password, and the consent step, accepted at Hydra's admin API.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/pkg/env"
	"github.com/orderflow/orderflow/pkg/redisconn"
	"github.com/orderflow/orderflow/pkg/resilience"
	"github.com/orderflow/orderflow/pkg/startup"
	"github.com/orderflow/orderflow/pkg/telemetry"
	"github.com/orderflow/orderflow/pkg/web"
	"github.com/orderflow/orderflow/services/identity/internal/identity"
)

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "identity:", err)
		os.Exit(1)
	}
}

// config is everything identity reads from its environment, read by
// readConfig and logged at start-up by LogValue.
type config struct {
	startup.Config
	hydraAdminURL string
	hydraTimeout  time.Duration
	// csrfKey signs the login and consent forms' CSRF tokens; every
	// replica needs the same one. Never logged.
	csrfKey  string
	redisURL string
	// loginRate is the login attempts allowed a minute per account and per
	// client address; 0 turns the limit off.
	loginRate int
	// trustedProxies may set X-Forwarded-For (TRUSTED_PROXIES): behind the
	// gateway, the per-address login limit must key on the client, not on
	// the gateway.
	trustedProxies []netip.Prefix
	// shutdownDrain is how long the process keeps serving after SIGTERM
	// with /readyz failing, so a load balancer stops routing to it first
	// (SHUTDOWN_DRAIN; 0 by default).
	shutdownDrain time.Duration

	// hydra is the failsafe-go policy of each call to Hydra's admin API:
	// IDENTITY_HYDRA_BREAKER_*, IDENTITY_HYDRA_RETRY_*,
	// IDENTITY_HYDRA_BULKHEAD, with IDENTITY_HYDRA_TIMEOUT per attempt.
	hydra resilience.Policy
}

// readConfig reads the environment, then the flags in args (local
// overrides), and reports every bad setting at once.
func readConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	r := env.New(getenv)
	c := config{
		Config: startup.Config{
			Service:     "identity",
			Database:    "identity",
			Addr:        r.String("IDENTITY_ADDR", ":8084"),
			DatabaseURL: r.String("IDENTITY_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/identity?sslmode=disable"),
			DBMaxConns:  r.Int("IDENTITY_DB_MAX_CONNS", 10),
			LogLevel:    r.String("LOG_LEVEL", "info"),
		},
		hydraAdminURL: r.String("IDENTITY_HYDRA_ADMIN_URL", "http://127.0.0.1:4445"),
		hydraTimeout:  r.Duration("IDENTITY_HYDRA_TIMEOUT", 3*time.Second),
		csrfKey:       r.Required("IDENTITY_CSRF_KEY"),
		redisURL:      r.String("IDENTITY_REDIS_URL", "redis://127.0.0.1:6379/0"),
		loginRate:     r.Int("IDENTITY_LOGIN_RATE", 10),
		shutdownDrain: r.Duration("SHUTDOWN_DRAIN", 0),
	}
	c.hydra = resilience.ReadPolicy(r, "IDENTITY_HYDRA", c.hydraTimeout)
	var proxyErr, telErr error
	c.trustedProxies, proxyErr = web.ParsePrefixes(r.String("TRUSTED_PROXIES", ""))
	c.Telemetry, telErr = telemetry.ReadConfig("identity", getenv)
	errs := append([]error{r.Err(), proxyErr, telErr}, c.validate()...)
	if err := errors.Join(append(errs, c.ParseFlags(args, stderr))...); err != nil {
		return config{}, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

// validate reports every setting out of range.
func (c config) validate() []error {
	errs := []error{c.hydra.Validate("IDENTITY_HYDRA")}
	if c.csrfKey != "" && len(c.csrfKey) < identity.MinCSRFKeyLen {
		errs = append(errs, fmt.Errorf("IDENTITY_CSRF_KEY must have at least %d characters", identity.MinCSRFKeyLen))
	}
	if u, err := url.Parse(c.hydraAdminURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("IDENTITY_HYDRA_ADMIN_URL=%q must be an http(s) URL", c.hydraAdminURL))
	}
	if c.hydraTimeout <= 0 {
		errs = append(errs, errors.New("IDENTITY_HYDRA_TIMEOUT must be positive"))
	}
	if c.loginRate < 0 {
		errs = append(errs, errors.New("IDENTITY_LOGIN_RATE must not be negative"))
	}
	return errs
}

// LogValue is the configuration as the start-up log shows it: URLs without
// their passwords, the CSRF key masked.
func (c config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("addr", c.Addr), slog.String("database_url", env.RedactURL(c.DatabaseURL)),
		slog.Int("db_max_conns", c.DBMaxConns),
		slog.String("hydra_admin_url", c.hydraAdminURL), slog.String("hydra_timeout", c.hydraTimeout.String()),
		slog.String("csrf_key", env.Masked),
		slog.String("redis_url", env.RedactURL(c.redisURL)), slog.Int("login_rate_per_minute", c.loginRate),
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
	log, tel, pool := p.Log, p.Tel, p.Pool
	// Redis only holds the login allowances: when it is down, logins are
	// not limited (and counted), they do not fail.
	rdb, err := redisconn.Open(cfg.redisURL, 0)
	if err != nil {
		return err
	}
	defer rdb.Close()

	// One guard for Hydra's admin API, shared by every request, so its
	// breaker sees all the traffic to Hydra.
	hydraDown := resilience.New("hydra", cfg.hydra, tel.Transport(resilience.NewTransport()), log)
	csrf, err := identity.NewCSRF(cfg.csrfKey)
	if err != nil {
		return err
	}
	svc := identity.NewService(log, identity.NewStore(pool),
		identity.NewHydra(cfg.hydraAdminURL, hydraDown.Client()),
		identity.NewHasher(identity.DefaultPasswordParams(), runtime.GOMAXPROCS(0)),
		identity.NewLoginLimiter(rdb, "identity:login:", cfg.loginRate, log))
	if err := errors.Join(
		tel.InstrumentRedis(rdb),
		hydraDown.Instrument(tel.MeterFor("orderflow/resilience")),
		svc.Instrument(tel.MeterFor("orderflow/identity")),
	); err != nil {
		return err
	}
	handler, err := identity.NewHandler(log, svc, csrf, tel.MetricsHandler())
	if err != nil {
		return err
	}
	return web.ListenAndServe(ctx, cfg.Addr, cfg.shutdownDrain, tel.Middleware(web.ClientAddr(cfg.trustedProxies)(handler)), log)
}
