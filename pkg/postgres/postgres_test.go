package postgres_test

import (
	"context"
	"testing"
	"testing/fstest"
	"time"

	"github.com/orderflow/orderflow/pkg/dbtest"
	"github.com/orderflow/orderflow/pkg/postgres"
)

// TestOpen_ServerSideTimeouts: every connection of a pool carries a
// statement_timeout, so a statement that hangs is ended by the server; a
// URL may set its own.
func TestOpen_ServerSideTimeouts(t *testing.T) {
	t.Parallel()
	url := dbtest.NewURL(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tt := range []struct{ url, want string }{
		{url, postgres.DefaultStatementTimeout},
		{url + "&statement_timeout=250", "250ms"},
	} {
		pool, err := postgres.Open(ctx, tt.url, 1)
		if err != nil {
			t.Fatal(err)
		}
		var got string
		if err := pool.QueryRow(ctx, "SHOW statement_timeout").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("statement_timeout = %q; want %q", got, tt.want)
		}
		if tt.want == "250ms" {
			// The server cancels the statement: 57014 query_canceled.
			_, err := pool.Exec(ctx, "SELECT pg_sleep(5)")
			if err == nil {
				t.Error("pg_sleep(5) with statement_timeout 250ms succeeded; want it cancelled")
			}
		}
		pool.Close()
	}
}

// TestOpen_WithMigrations: the pool Open returns is on the migrated schema,
// and a migration that fails is Open's error.
func TestOpen_WithMigrations(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	good := fstest.MapFS{"00001_widgets.sql": {Data: []byte(
		"-- +goose Up\nCREATE TABLE widgets (id int PRIMARY KEY);\n-- +goose Down\nDROP TABLE widgets;\n")}}
	pool, err := postgres.Open(ctx, dbtest.NewURL(t, nil), 1, postgres.WithMigrations(good))
	if err != nil {
		t.Fatalf("Open(WithMigrations) = %v; want nil", err)
	}
	defer pool.Close()
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM widgets").Scan(&n); err != nil {
		t.Errorf("widgets after Open(WithMigrations): %v; want the migrated table", err)
	}

	bad := fstest.MapFS{"00001_broken.sql": {Data: []byte("-- +goose Up\nCREATE TABLE (;\n")}}
	if pool, err := postgres.Open(ctx, dbtest.NewURL(t, nil), 1, postgres.WithMigrations(bad)); err == nil {
		pool.Close()
		t.Error("Open(WithMigrations(broken)) = nil; want the migration's error")
	}
}
