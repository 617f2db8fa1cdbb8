// Command provider runs the simulated external card processor that the
// payment service charges over HTTP. Its charges and refunds live in its own
// Postgres database (migrated on start-up), so a restart loses none; its
// latency, error rate and outages are set at start-up from the environment
// and changed at run time through PUT /admin/config.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/pkg/env"
	"github.com/orderflow/orderflow/pkg/startup"
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

// config is everything the provider reads from its environment, read by
// readConfig and logged at start-up by LogValue.
type config struct {
	startup.Config
	apiKey string
	sim    provider.Config
}

// readConfig reads the environment, then the flags in args (local
// overrides), and reports every bad setting at once.
func readConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	r := env.New(getenv)
	cfg := config{
		Config: startup.Config{
			Service:     "provider",
			Database:    "provider",
			Addr:        r.String("PROVIDER_ADDR", ":8090"),
			DatabaseURL: r.String("PROVIDER_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/provider?sslmode=disable"),
			DBMaxConns:  r.Int("PROVIDER_DB_MAX_CONNS", 10),
			LogLevel:    r.String("LOG_LEVEL", "info"),
		},
		apiKey: r.String("PROVIDER_API_KEY", ""),
		sim: provider.Config{
			LatencyMS: r.Int("PROVIDER_LATENCY_MS", 0),
			ErrorRate: r.Float("PROVIDER_ERROR_RATE", 0),
			Outage:    r.Bool("PROVIDER_OUTAGE", false),
		},
	}
	var telErr error
	cfg.Telemetry, telErr = telemetry.ReadConfig("provider", getenv)
	errs := append([]error{r.Err(), telErr}, cfg.validate()...)
	if err := errors.Join(append(errs, cfg.ParseFlags(args, stderr))...); err != nil {
		return config{}, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

// validate reports every setting out of range, in a stable order.
func (c config) validate() []error {
	var errs []error
	if c.DBMaxConns < 1 {
		errs = append(errs, errors.New("PROVIDER_DB_MAX_CONNS must be at least 1"))
	}
	names := map[string]string{"latency_ms": "PROVIDER_LATENCY_MS", "error_rate": "PROVIDER_ERROR_RATE"}
	problems := c.sim.Validate()
	for _, field := range slices.Sorted(maps.Keys(problems)) {
		errs = append(errs, fmt.Errorf("%s %s", names[field], problems[field]))
	}
	return errs
}

// LogValue is the configuration as the start-up log shows it: the database
// URL without its password, the API key masked.
func (c config) LogValue() slog.Value {
	apiKey := ""
	if c.apiKey != "" {
		apiKey = env.Masked
	}
	return slog.GroupValue(
		slog.String("addr", c.Addr), slog.String("database_url", env.RedactURL(c.DatabaseURL)),
		slog.Int("db_max_conns", c.DBMaxConns), slog.String("api_key", apiKey),
		slog.Int("latency_ms", c.sim.LatencyMS), slog.Float64("error_rate", c.sim.ErrorRate),
		slog.Bool("outage", c.sim.Outage),
		slog.String("log_level", c.LogLevel), slog.String("otel_endpoint", c.Telemetry.Endpoint))
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
	store := provider.NewStore(pool)
	sim := provider.NewSimulator(cfg.sim, store)
	handler := provider.NewHandler(log, sim, map[string]web.Check{"postgres": store.Ping}, tel.MetricsHandler(), cfg.apiKey)

	// Not web.ListenAndServe: this is the one server that must hold an
	// answer for a simulated latency of up to a minute, longer than the
	// write timeout every service has, and whose requests must end with
	// ctx, so a shutdown cuts a simulated latency short (charging nothing)
	// instead of waiting out the grace period. Nobody balances to it, so
	// it does not drain.
	srv := web.NewServer(cfg.Addr, tel.Middleware(handler), log)
	srv.WriteTimeout = time.Duration(provider.MaxLatencyMS)*time.Millisecond + 10*time.Second
	srv.BaseContext = func(net.Listener) context.Context { return ctx }
	return web.Serve(ctx, srv, log, 10*time.Second)
}
