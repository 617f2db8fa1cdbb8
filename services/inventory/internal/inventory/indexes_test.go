package inventory

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// bigTable is the row count above which a sequential scan fails the plan
// check: below it a scan is what the planner should pick.
const bigTable = 1000

// planNode is the part of EXPLAIN (FORMAT JSON) the check reads.
type planNode struct {
	NodeType     string     `json:"Node Type"`
	RelationName string     `json:"Relation Name"`
	IndexName    string     `json:"Index Name"`
	Plans        []planNode `json:"Plans"`
}

// explain returns the plan Postgres picks for sql with args bound (a custom
// plan for these values, like the first executions of a prepared statement).
// Writes are only planned, never run.
func explain(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) planNode {
	t.Helper()
	var raw []byte
	if err := pool.QueryRow(context.Background(), "EXPLAIN (FORMAT JSON) "+sql, args...).Scan(&raw); err != nil {
		t.Fatalf("EXPLAIN %s: %v", sql, err)
	}
	var plans []struct {
		Plan planNode `json:"Plan"`
	}
	if err := json.Unmarshal(raw, &plans); err != nil || len(plans) != 1 {
		t.Fatalf("EXPLAIN output %s: %v", raw, err)
	}
	return plans[0].Plan
}

// seqScans returns the big tables the plan reads sequentially.
func seqScans(n planNode, rows map[string]float64) []string {
	var bad []string
	if n.NodeType == "Seq Scan" && rows[n.RelationName] > bigTable {
		bad = append(bad, fmt.Sprintf("%s (%.0f rows)", n.RelationName, rows[n.RelationName]))
	}
	for _, c := range n.Plans {
		bad = append(bad, seqScans(c, rows)...)
	}
	return bad
}

// indexesUsed lists the indexes a plan reads, for the failure message.
func indexesUsed(n planNode) []string {
	var ix []string
	if n.IndexName != "" {
		ix = append(ix, n.IndexName)
	}
	for _, c := range n.Plans {
		ix = append(ix, indexesUsed(c)...)
	}
	return ix
}

func tableRows(t *testing.T, pool *pgxpool.Pool) map[string]float64 {
	t.Helper()
	rows, err := pool.Query(context.Background(),
		`SELECT relname, reltuples::float8 FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace`)
	if err != nil {
		t.Fatalf("table sizes: %v", err)
	}
	defer rows.Close()
	m := map[string]float64{}
	for rows.Next() {
		var name string
		var n float64
		if err := rows.Scan(&name, &n); err != nil {
			t.Fatalf("scan: %v", err)
		}
		m[name] = n
	}
	return m
}

// TestIndexes_ServeEveryQuery plans every query of inventory's request paths
// and background loop against a catalogue of 200k products and 50k
// reservations, and fails on a sequential scan of a big table. The SQL is
// copied from store.go; each case names the method it comes from, so a
// changed query must be changed here too.
func TestIndexes_ServeEveryQuery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newTestPool(t)
	start := time.Now()
	if _, err := NewStore(pool).Seed(ctx, 200_000); err != nil {
		t.Fatalf("Seed: %v", err)
	}
	// 50k reservations of two items each: most long finished, 2% still held.
	// The bulk load is no request: it may take longer than the pool's
	// statement_timeout on a busy machine.
	const seed = `
BEGIN;
SET LOCAL statement_timeout = 0;
INSERT INTO reservations (order_id, status, expires_at, created_at)
SELECT md5('r' || i)::uuid,
       CASE WHEN i % 50 = 0 THEN 'reserved' WHEN i % 3 = 0 THEN 'released' ELSE 'committed' END,
       now() - interval '1 day' + (i % 1000) * interval '1 minute',
       now() - interval '2 days'
FROM generate_series(1, 50000) AS i;
INSERT INTO reservation_items (order_id, sku, quantity, unit_price_cents)
SELECT md5('r' || i)::uuid, 'SKU-' || lpad(((i * 7) % 200000 + 1)::text, greatest(5, length(((i * 7) % 200000 + 1)::text)), '0'), 1 + i % 5, 500
FROM generate_series(1, 50000) AS i
UNION ALL
SELECT md5('r' || i)::uuid, 'SKU-' || lpad(((i * 13 + 1) % 200000 + 1)::text, greatest(5, length(((i * 13 + 1) % 200000 + 1)::text)), '0'), 1, 700
FROM generate_series(1, 50000) AS i
ON CONFLICT DO NOTHING;
ANALYZE;
COMMIT;`
	if _, err := pool.Exec(ctx, seed); err != nil {
		t.Fatalf("seed reservations: %v", err)
	}
	t.Logf("seeded in %v", time.Since(start).Round(time.Millisecond))
	rows := tableRows(t, pool)
	for _, table := range []string{"products", "reservations", "reservation_items"} {
		if rows[table] < 40_000 {
			t.Fatalf("%s has %.0f rows after seeding; want a realistic volume", table, rows[table])
		}
	}

	var orderID string
	if err := pool.QueryRow(ctx, `SELECT order_id::text FROM reservations WHERE status = 'reserved' LIMIT 1`).Scan(&orderID); err != nil {
		t.Fatalf("pick order: %v", err)
	}
	skus := []string{"SKU-00042", "SKU-12345", "SKU-199999"}
	qtys := []int32{1, 2, 3}
	prices := []int64{100, 200, 300}
	ids := []string{orderID}

	tests := []struct {
		name string // Store method
		sql  string
		args []any
	}{
		{"Product", `SELECT sku, name, price_cents, currency, available FROM products WHERE sku = $1`, []any{"SKU-12345"}},
		{"Products first page", `
SELECT sku, name, price_cents, currency, available
FROM products
WHERE sku > $1
ORDER BY sku
LIMIT $2`, []any{"", 21}},
		{"Products keyset page", `
SELECT sku, name, price_cents, currency, available
FROM products
WHERE sku > $1
ORDER BY sku
LIMIT $2`, []any{"SKU-150000", 101}},
		{"SetStock", `
UPDATE products SET available = $2, updated_at = now()
WHERE sku = $1
RETURNING sku, name, price_cents, currency, available`, []any{"SKU-00042", 5}},
		{"Reserve insert", `
INSERT INTO reservations (order_id, status, expires_at)
VALUES ($1, 'reserved', now() + $2::bigint * interval '1 microsecond')
ON CONFLICT (order_id) DO NOTHING
RETURNING expires_at`, []any{orderID, int64(1000)}},
		{"Reserve lock", `
SELECT sku, name, price_cents, currency, available
FROM products
WHERE sku = ANY($1)
ORDER BY sku
FOR UPDATE`, []any{skus}},
		{"Reserve take", `
UPDATE products p SET available = p.available - x.qty, updated_at = now()
FROM unnest($1::text[], $2::int[]) AS x(sku, qty)
WHERE p.sku = x.sku`, []any{skus, qtys}},
		{"Reserve addItems", `
INSERT INTO reservation_items (order_id, sku, quantity, unit_price_cents)
SELECT $1, x.sku, x.qty, x.price
FROM unnest($2::text[], $3::int[], $4::bigint[]) AS x(sku, qty, price)`, []any{orderID, skus, qtys, prices}},
		{"Commit", `UPDATE reservations SET status = 'committed',
			updated_at = CASE WHEN status = 'committed' THEN updated_at ELSE now() END
		WHERE order_id = $1 AND status IN ('reserved', 'committed')
		RETURNING expires_at`, []any{orderID}},
		{"Release tomb", `
INSERT INTO reservations (order_id, status, expires_at)
VALUES ($1, 'released', now())
ON CONFLICT (order_id) DO NOTHING`, []any{orderID}},
		{"Release", `UPDATE reservations SET status = 'released', updated_at = now() WHERE order_id = $1`, []any{orderID}},
		{"ExpireReservations pick", `
SELECT order_id FROM reservations
WHERE status = 'reserved' AND expires_at < now()
ORDER BY expires_at
LIMIT $1
FOR UPDATE SKIP LOCKED`, []any{SweepBatchSize}},
		{"ExpireReservations mark", `UPDATE reservations SET status = 'expired', updated_at = now() WHERE order_id = ANY($1)`, []any{ids}},
		{"PurgeReservations", `
DELETE FROM reservations WHERE order_id IN (
    SELECT order_id FROM reservations
    WHERE status IN ('released', 'expired') AND updated_at < $1
    ORDER BY updated_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED)`, []any{time.Now().Add(-ReservationRetention), 1000}},
		{"returnStock sum", `
SELECT sku, sum(quantity)::int
FROM reservation_items
WHERE order_id = ANY($1)
GROUP BY sku
ORDER BY sku`, []any{ids}},
		{"returnStock lock", `SELECT sku FROM products WHERE sku = ANY($1) ORDER BY sku FOR UPDATE`, []any{skus}},
		{"returnStock give", `
UPDATE products p SET available = p.available + x.qty, updated_at = now()
FROM unnest($1::text[], $2::int[]) AS x(sku, qty)
WHERE p.sku = x.sku`, []any{skus, qtys}},
		{"lockReservation", `SELECT status FROM reservations WHERE order_id = $1 FOR UPDATE`, []any{orderID}},
		{"loadReservation head", `SELECT status, expires_at FROM reservations WHERE order_id = $1`, []any{orderID}},
		{"loadReservation lines", `
SELECT sku, quantity, unit_price_cents
FROM reservation_items
WHERE order_id = $1
ORDER BY sku`, []any{orderID}},
	}
	// The check itself must see a scan where there is no index.
	if bad := seqScans(explain(t, pool, `SELECT sku FROM products WHERE name = $1`, "x"), rows); len(bad) == 0 {
		t.Fatal("the plan check missed the Seq Scan of products by name")
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.name, " ", "_"), func(t *testing.T) {
			plan := explain(t, pool, tt.sql, tt.args...)
			if bad := seqScans(plan, rows); len(bad) > 0 {
				t.Errorf("%s scans %v sequentially (indexes used: %v); add an index", tt.name, bad, indexesUsed(plan))
			}
		})
	}
}
