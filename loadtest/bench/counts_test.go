package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/pkg/dbtest"
)

// TestPGSource counts a known workload on the test server
// (TEST_DATABASE_URL): with pg_stat_statements loaded there, statements and
// commits; without it, the fallback says so and counts transactions.
func TestPGSource(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := dbtest.NewURL(t, nil)
	e := &environment{o: options{pgURL: dbtest.ServerURL()}}
	defer e.close()
	src, err := e.newPGSource(ctx)
	if err != nil {
		t.Fatalf("newPGSource: %v (is PostgreSQL up? make deps; or set TEST_DATABASE_URL)", err)
	}
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx) // its backend flushes its statistics as it exits
	dbs := map[string]string{"order": dbName(db)}
	time.Sleep(time.Second)
	before, err := src.snapshot(ctx, dbs)
	if err != nil {
		t.Fatal(err)
	}
	conn, err = pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		var v int
		if err := conn.QueryRow(ctx, `SELECT id FROM t WHERE id = $1`, 1).Scan(&v); err != nil {
			t.Fatalf("select %d: %v", i, err)
		}
	}
	if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO t VALUES (2)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	var d pgCounts
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		after, err := src.snapshot(ctx, dbs)
		if err != nil {
			t.Fatal(err)
		}
		a, b := after["order"], before["order"]
		d = pgCounts{xacts: a.xacts - b.xacts, written: a.written - b.written,
			statements: a.statements - b.statements, commits: a.commits - b.commits}
		if d.xacts >= 4 || time.Now().After(deadline) {
			break
		}
	}
	// Autovacuum's own transactions in the database may add a few.
	if d.xacts < 4 || d.xacts > 8 || d.written != 1 {
		t.Errorf("transactions %d, rows written %d; want 4 (3 autocommit SELECTs, 1 BEGIN…COMMIT; autovacuum may add some) and 1",
			d.xacts, d.written)
	}
	switch src.name() {
	case "pg_stat_statements":
		if d.statements != 4 || d.commits != 1 {
			t.Errorf("pg_stat_statements: statements %d, commits %d; want 4 (BEGIN not one) and 1", d.statements, d.commits)
		}
	default:
		if !strings.Contains(src.note, "not loaded") || d.statements != 0 {
			t.Errorf("fallback: note %q, statements %d; want a note saying the extension is not loaded, none counted", src.note, d.statements)
		}
	}
	t.Logf("source %s: %+v", src.name(), d)
}
