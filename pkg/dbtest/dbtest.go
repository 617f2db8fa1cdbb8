// Package dbtest gives each test package its own freshly migrated database on
// the real local PostgreSQL server.
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io/fs"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/pkg/postgres"
)

// ServerURL is the server tests use: $TEST_DATABASE_URL, else the local one.
func ServerURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// NewURL creates an empty database with a unique name, migrates it with
// migrations (nil for none), drops it when the test ends and returns its URL.
// When the server cannot be reached the test fails and says how to start it.
func NewURL(t testing.TB, migrations fs.FS) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "orderflow_test_" + hex.EncodeToString(b[:])
	u, err := url.Parse(ServerURL())
	if err != nil {
		t.Fatalf("TEST_DATABASE_URL: %v", err)
	}
	u.Path = "/" + name
	dbURL := u.String()
	if err := postgres.CreateDatabase(ctx, dbURL); err != nil {
		t.Fatalf("PostgreSQL is needed for this test and is not reachable: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, ServerURL())
		if err != nil {
			t.Logf("drop %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Logf("drop %s: %v", name, err)
		}
	})
	if migrations != nil {
		pool, err := postgres.Open(ctx, dbURL, 2, postgres.WithMigrations(migrations))
		if err != nil {
			t.Fatalf("open and migrate test database: %v", err)
		}
		pool.Close()
	}
	return dbURL
}

// NewPool is NewURL plus a pool on the new database, closed when the test ends.
func NewPool(t testing.TB, migrations fs.FS) *pgxpool.Pool {
	t.Helper()
	dbURL := NewURL(t, migrations)
	pool, err := postgres.Open(context.Background(), dbURL, 10)
	if err != nil {
		t.Fatalf("open test database: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}
