// Command identity runs the login and consent app of Orderflow's OpenID
// Connect provider (Ory Hydra): customer sign-up, the login form that checks
// e-mail and password, and the consent step, accepted at Hydra's admin API.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/pkg/env"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/redisconn"
	"github.com/orderflow/orderflow/pkg/resilience"
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

type config struct {
	addr          string
	databaseURL   string
	maxConns      int
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
	logLevel       string
	// shutdownDrain is how long the process keeps serving after SIGTERM
	// with /readyz failing, so a load balancer stops routing to it first
	// (SHUTDOWN_DRAIN; 0 by default).
	shutdownDrain time.Duration

	// hydra is the failsafe-go policy of each call to Hydra's admin API:
	// IDENTITY_HYDRA_BREAKER_*, IDENTITY_HYDRA_RETRY_*,
	// IDENTITY_HYDRA_BULKHEAD, with IDENTITY_HYDRA_TIMEOUT per attempt.
	hydra resilience.Policy
}

func readConfig(getenv func(string) string) (config, error) {
	r := env.New(getenv)
	c := config{
		addr:          r.String("IDENTITY_ADDR", ":8084"),
		databaseURL:   r.String("IDENTITY_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/identity?sslmode=disable"),
		maxConns:      r.Int("IDENTITY_DB_MAX_CONNS", 10),
		hydraAdminURL: r.String("IDENTITY_HYDRA_ADMIN_URL", "http://127.0.0.1:4445"),
		hydraTimeout:  r.Duration("IDENTITY_HYDRA_TIMEOUT", 3*time.Second),
		csrfKey:       r.Required("IDENTITY_CSRF_KEY"),
		redisURL:      r.String("IDENTITY_REDIS_URL", "redis://127.0.0.1:6379/0"),
		loginRate:     r.Int("IDENTITY_LOGIN_RATE", 10),
		logLevel:      r.String("LOG_LEVEL", "info"),
		shutdownDrain: r.Duration("SHUTDOWN_DRAIN", 0),
	}
	c.hydra = resilience.ReadPolicy(r, "IDENTITY_HYDRA", c.hydraTimeout)
	var proxyErr error
	c.trustedProxies, proxyErr = web.ParsePrefixes(r.String("TRUSTED_PROXIES", ""))
	errs := []error{r.Err(), c.hydra.Validate("IDENTITY_HYDRA"), proxyErr}
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
	return c, errors.Join(errs...)
}

func run(ctx context.Context, _ []string, getenv func(string) string, stdout, _ io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	cfg, err := readConfig(getenv)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := telemetry.NewLogger(stdout, "identity", cfg.logLevel)
	log.InfoContext(ctx, "starting", "addr", cfg.addr, "database_url", postgres.Redact(cfg.databaseURL),
		"db_max_conns", cfg.maxConns, "hydra_admin_url", cfg.hydraAdminURL,
		"hydra_timeout", cfg.hydraTimeout.String(), "csrf_key", strings.Repeat("*", 8),
		"redis_url", redactURL(cfg.redisURL), "login_rate_per_minute", cfg.loginRate,
		"trusted_proxies", fmt.Sprint(cfg.trustedProxies), "log_level", cfg.logLevel)
	tel, err := telemetry.New(ctx, "identity", getenv)
	if err != nil {
		return err
	}
	defer tel.Close(ctx, log)

	pool, err := postgres.Open(ctx, cfg.databaseURL, cfg.maxConns, postgres.WithTracer(tel.PgxTracer("identity")))
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := tel.ObservePool(pool, "identity"); err != nil {
		return err
	}
	fsys, err := migrations.For("identity")
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if err := postgres.Migrate(ctx, pool, fsys); err != nil {
		return err
	}

	// Redis only holds the login allowances: when it is down, logins are
	// not limited (and counted), they do not fail.
	rdb, err := redisconn.Open(cfg.redisURL, 0)
	if err != nil {
		return err
	}
	defer rdb.Close()
	if err := tel.InstrumentRedis(rdb); err != nil {
		return err
	}

	// One guard for Hydra's admin API, shared by every request, so its
	// breaker sees all the traffic to Hydra.
	hydraDown := resilience.New("hydra", cfg.hydra, tel.Transport(nil), log)
	if err := tel.ObserveDownstreams(hydraDown); err != nil {
		return err
	}
	csrf, err := identity.NewCSRF(cfg.csrfKey)
	if err != nil {
		return err
	}
	svc := identity.NewService(log, identity.NewStore(pool),
		identity.NewHydra(cfg.hydraAdminURL, hydraDown.Client()),
		identity.NewHasher(identity.DefaultPasswordParams(), runtime.GOMAXPROCS(0)),
		identity.NewLoginLimiter(rdb, "identity:login:", cfg.loginRate, log))
	if err := tel.ObserveCounts("orderflow.identity.logins", "Login attempts by result: succeeded, refused (wrong e-mail or password), rate_limited.",
		"result", func() map[string]uint64 {
			st := svc.Stats()
			return map[string]uint64{"succeeded": st.Succeeded, "refused": st.Refused, "rate_limited": st.Limited}
		}); err != nil {
		return err
	}
	if err := tel.ObserveCounts("orderflow.ratelimit.fail_open", "Requests let through unlimited because Redis failed.",
		"", func() map[string]uint64 { return map[string]uint64{"": svc.Stats().FailOpen} }); err != nil {
		return err
	}

	handler, err := identity.NewHandler(log, svc, csrf)
	if err != nil {
		return err
	}
	drain := web.NewDrainer(cfg.shutdownDrain, log)
	srv := web.NewServer(cfg.addr, drain.Handler(tel.Handler(web.ClientAddr(cfg.trustedProxies)(handler))), log)
	return web.Serve(drain.Context(ctx), srv, log, 10*time.Second)
}

// redactURL hides a password in a URL for the start-up log.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable)"
	}
	return u.Redacted()
}
