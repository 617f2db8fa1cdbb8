// Package startup opens what every Orderflow command runs on, in the order
// its run wants them: the JSON logger, telemetry, and a connection pool on
// the command's Postgres database, migrated to the schema the binary
// embeds. It also parses -addr, the one command-line flag they all take.
//
// Each command still reads its own variables (deploy's tests read their
// names from main.go) and builds its own store, service and handler; what
// is here is only the part of run that was the same in all of them.
package startup

import (
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/telemetry"
)

// Config is the part of a command's configuration that every command has,
// filled by its readConfig.
type Config struct {
	// Service names the command ("order", "provider"): the service of its
	// log lines, its flag set, the folder of its migrations, and the
	// prefix of its <SERVICE>_ADDR variable.
	Service string
	// Database names the command's database in query spans and pool
	// metrics ("orders").
	Database string
	// Addr is the listen address, <SERVICE>_ADDR or -addr.
	Addr        string
	DatabaseURL string
	DBMaxConns  int
	LogLevel    string
	Telemetry   telemetry.Config
}

// ParseFlags parses args (os.Args: the program's name first; none: no
// flags) over c: -addr overrides Addr.
func (c *Config) ParseFlags(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet(c.Service, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Addr, "addr", c.Addr, "listen address (overrides "+strings.ToUpper(c.Service)+"_ADDR)")
	if len(args) == 0 {
		return nil
	}
	return fs.Parse(args[1:])
}

// Process is what Start opened. Close closes it.
type Process struct {
	Log  *slog.Logger
	Tel  *telemetry.Telemetry
	Pool *pgxpool.Pool
}

// Start builds the logger and logs "starting" with the command's whole
// configuration (config, which masks its own secrets), sets up telemetry,
// and opens the pool on c.DatabaseURL, migrated with the migrations that
// schema returns for c.Service (migrations.For), traced and observed as
// c.Database. What it opened before a failure it closes again.
func Start(ctx context.Context, stdout io.Writer, c Config, config slog.LogValuer, schema func(service string) (fs.FS, error)) (*Process, error) {
	log := telemetry.NewLogger(stdout, c.Service, c.LogLevel)
	log.InfoContext(ctx, "starting", "config", config)
	tel, err := telemetry.Setup(ctx, c.Telemetry)
	if err != nil {
		return nil, err
	}
	p := &Process{Log: log, Tel: tel}
	if p.Pool, err = openPool(ctx, c, tel, schema); err != nil {
		p.Close(ctx)
		return nil, err
	}
	return p, nil
}

func openPool(ctx context.Context, c Config, tel *telemetry.Telemetry, schema func(string) (fs.FS, error)) (*pgxpool.Pool, error) {
	migrations, err := schema(c.Service)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	pool, err := postgres.Open(ctx, c.DatabaseURL, c.DBMaxConns,
		postgres.WithTracer(tel.PgxTracer(c.Database)), postgres.WithMigrations(migrations))
	if err != nil {
		return nil, err
	}
	if err := tel.ObservePool(pool, c.Database); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// Close closes the pool, then flushes telemetry (see telemetry.Close), for
// a deferred call at the end of run.
func (p *Process) Close(ctx context.Context) {
	if p.Pool != nil {
		p.Pool.Close()
	}
	p.Tel.Close(ctx, p.Log)
}
