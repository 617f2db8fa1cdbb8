// Package postgres opens pgx connection pools, runs goose migrations from an
// embedded file system and creates databases, for every Orderflow service.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// StartHint tells a person how to start the local server when it is down.
const StartHint = "start PostgreSQL with `make deps` (or: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start)"

// The server-side limits Open sets on every connection unless the database
// URL sets them: shorter than the services' own store budgets (10 s), so
// the server cancels a hung statement before its caller gives up on it.
const (
	DefaultStatementTimeout         = "5s"
	DefaultIdleInTransactionTimeout = "30s"
)

// Option adjusts what Open does.
type Option func(*options)

type options struct {
	tracer     pgx.QueryTracer
	migrations fs.FS
}

// WithTracer traces every query of the pool's connections with t (for
// example otelpgx, which also records query latency).
func WithTracer(t pgx.QueryTracer) Option {
	return func(o *options) { o.tracer = t }
}

// WithMigrations has Open apply fsys's pending migrations (see Migrate)
// once the server answers, so a service starts only on its current schema.
func WithMigrations(fsys fs.FS) Option {
	return func(o *options) { o.migrations = fsys }
}

// Open returns a pool for databaseURL and pings it once, so a wrong URL or a
// stopped server is reported at start-up; with WithMigrations it then
// migrates the database. maxConns <= 0 keeps pgx's default.
func Open(ctx context.Context, databaseURL string, maxConns int, opts ...Option) (*pgxpool.Pool, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if maxConns > 0 {
		cfg.MaxConns = int32(maxConns)
	}
	// A statement or transaction that hangs (a lock never released, a
	// server in trouble) is ended by the server, so it can hold neither a
	// connection of the pool nor the goroutine waiting on it for long. A
	// database URL may set its own (…&statement_timeout=2000).
	for name, value := range map[string]string{
		"statement_timeout":                   DefaultStatementTimeout,
		"idle_in_transaction_session_timeout": DefaultIdleInTransactionTimeout,
	} {
		if _, set := cfg.ConnConfig.RuntimeParams[name]; !set {
			cfg.ConnConfig.RuntimeParams[name] = value
		}
	}
	if o.tracer != nil {
		cfg.ConnConfig.Tracer = o.tracer
	}
	cfg.MaxConnIdleTime = 5 * time.Minute
	cfg.HealthCheckPeriod = 15 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("create pool: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("ping %s: %w (%s)", Redact(databaseURL), err, StartHint)
	}
	if o.migrations != nil {
		if err := Migrate(ctx, pool, o.migrations); err != nil {
			pool.Close()
			return nil, err
		}
	}
	return pool, nil
}

// Migrate applies every pending migration of fsys (goose SQL files at its
// root) under a Postgres advisory lock, so replicas starting together migrate
// once.
func Migrate(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS) error {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return fmt.Errorf("migration locker: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys, goose.WithSessionLocker(locker))
	if err != nil {
		return fmt.Errorf("migration provider: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// CreateDatabase creates the database named in databaseURL when it does not
// exist, connecting to the server's "postgres" database to do it.
func CreateDatabase(ctx context.Context, databaseURL string) error {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return fmt.Errorf("parse database url: %w", err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	if name == "" {
		return errors.New("database url names no database")
	}
	u.Path = "/postgres"
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return fmt.Errorf("connect to %s: %w (%s)", Redact(u.String()), err, StartHint)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database
		return nil
	}
	if err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// Redact returns databaseURL with its password masked, for logs.
func Redact(databaseURL string) string {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return "(unparseable url)"
	}
	return u.Redacted()
}

// IsUniqueViolation reports whether err is a unique-constraint violation.
func IsUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

// IsUnavailable reports whether err means the database cannot be reached
// right now (connection refused or reset, server shutting down or starting,
// too many connections), as opposed to a bad query. Services answer such
// errors with 503 and Retry-After instead of 500: retrying later can work.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return strings.HasPrefix(pgErr.Code, "08") || // connection exception
			pgErr.Code == "57P01" || pgErr.Code == "57P02" || pgErr.Code == "57P03" || // shutdown, crash, starting
			pgErr.Code == "53300" // too many connections
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || pgconn.SafeToRetry(err)
}
