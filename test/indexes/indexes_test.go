package indexes

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/pkg/dbtest"
)

// bigTable is the row count above which a sequential scan fails the check:
// below it a scan is what the planner should pick (invoice_counter has one
// row).
const bigTable = 1000

type planNode struct {
	NodeType     string     `json:"Node Type"`
	RelationName string     `json:"Relation Name"`
	IndexName    string     `json:"Index Name"`
	Plans        []planNode `json:"Plans"`
}

// query is one statement of a store, copied with the function it comes from:
// when a store's SQL changes, its copy here must change too.
type query struct {
	from string // the store function
	sql  string
	args []any
}

// newDB returns a fresh database migrated for service and filled by seed,
// then analysed so the planner knows its volume.
func newDB(t *testing.T, service, seed string) *pgxpool.Pool {
	t.Helper()
	fsys, err := migrations.For(service)
	if err != nil {
		t.Fatalf("migrations.For(%q): %v", service, err)
	}
	pool := dbtest.NewPool(t, fsys)
	start := time.Now()
	// The bulk load is no request: it may take longer than the pool's
	// statement_timeout on a busy machine.
	if _, err := pool.Exec(context.Background(), "BEGIN; SET LOCAL statement_timeout = 0; "+seed+"; ANALYZE; COMMIT;"); err != nil {
		t.Fatalf("seed %s: %v", service, err)
	}
	t.Logf("seeded %s in %v", service, time.Since(start).Round(time.Millisecond))
	return pool
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

// check plans every query and fails on a sequential scan of a big table.
// It first proves it can see one, on a query with no index behind it.
func check(t *testing.T, pool *pgxpool.Pool, mustScan string, queries []query) {
	t.Helper()
	rows := tableRows(t, pool)
	if bad := seqScans(explain(t, pool, mustScan), rows); len(bad) == 0 {
		t.Fatalf("the plan check missed the Seq Scan of %q", mustScan)
	}
	for _, q := range queries {
		t.Run(strings.ReplaceAll(q.from, " ", "_"), func(t *testing.T) {
			plan := explain(t, pool, q.sql, q.args...)
			if bad := seqScans(plan, rows); len(bad) > 0 {
				t.Errorf("%s scans %v sequentially (indexes used: %v); it needs an index", q.from, bad, indexesUsed(plan))
			}
		})
	}
}

// requireVolume fails when seeding left a table smaller than want rows.
func requireVolume(t *testing.T, pool *pgxpool.Pool, want map[string]float64) {
	t.Helper()
	rows := tableRows(t, pool)
	for table, n := range want {
		if rows[table] < n {
			t.Fatalf("%s has %.0f rows; want at least %.0f", table, rows[table], n)
		}
	}
}

// orderColumns is copied from services/order/internal/order/store.go.
const orderColumns = `id, customer_id, email, status, payment_method, total_cents, currency,
	payment_id, failure_reason, created_at, updated_at`

// compensationColumns is copied from services/order/internal/order/store.go.
const compensationColumns = `id, status, compensation_attempts, compensation_error, needs_attention_at`

func TestIndexes_Order(t *testing.T) {
	t.Parallel()
	// 200k orders of 20k customers with three items each, an idempotency key
	// each, and an outbox where all but 0.1% of the events were sent. A few
	// orders are pending or due for compensation, and a few cancellations'
	// compensations were parked for an operator, as in steady state.
	const seed = `
INSERT INTO orders (id, customer_id, email, status, payment_method, total_cents, currency, payment_id,
                    compensate_after, compensation_attempts, compensation_error, needs_attention_at,
                    created_at, updated_at)
SELECT md5('o' || i)::uuid, 'cus_' || (i % 20000), 'c' || i || '@example.com',
       CASE WHEN i % 500 = 0 THEN 'pending' WHEN i % 20 = 0 THEN 'payment_failed'
            WHEN i % 50 = 1 THEN 'cancelled' ELSE 'confirmed' END,
       'pm_card_ok', 1500, 'USD', 'pay_' || i,
       CASE WHEN i % 1000 = 20 THEN now() - interval '1 minute' END,
       CASE WHEN i % 5000 = 1 THEN 10 ELSE 0 END,
       CASE WHEN i % 5000 = 1 THEN 'refund pay_' || i || ': connection refused' END,
       CASE WHEN i % 5000 = 1 THEN now() - i * interval '10 seconds' END,
       now() - i * interval '10 seconds', now() - i * interval '10 seconds'
FROM generate_series(1, 200000) AS i;
INSERT INTO order_items (order_id, sku, quantity, unit_price_cents)
SELECT md5('o' || i)::uuid, 'SKU-' || lpad(((i * 7 + k) % 10000 + 1)::text, 5, '0'), 1 + k, 500
FROM generate_series(1, 200000) AS i, generate_series(0, 2) AS k;
INSERT INTO idempotency_keys (key, request_hash, order_id, status_code, response)
SELECT 'key-' || i, decode(md5('h' || i), 'hex'), md5('o' || i)::uuid,
       CASE WHEN i % 500 = 0 THEN NULL ELSE 201 END, CASE WHEN i % 500 = 0 THEN NULL ELSE '{}'::jsonb END
FROM generate_series(1, 200000) AS i;
INSERT INTO outbox (event_id, event_type, order_id, payload, created_at, sent_at, attempts)
SELECT md5('e' || i)::uuid, 'order.confirmed', md5('o' || i)::uuid, '{"type":"order.confirmed"}',
       now() - i * interval '10 seconds',
       CASE WHEN i % 1000 = 0 THEN NULL ELSE now() - i * interval '10 seconds' END, 1
FROM generate_series(1, 200000) AS i`
	pool := newDB(t, "order", seed)
	requireVolume(t, pool, map[string]float64{"orders": 150_000, "order_items": 500_000, "idempotency_keys": 150_000, "outbox": 150_000})

	id := "c4ca4238-a0b9-2382-0dcc-509a6f75849b" // md5('1')
	var orderID, customer string
	var created time.Time
	if err := pool.QueryRow(context.Background(),
		`SELECT id::text, customer_id, created_at FROM orders WHERE id = md5('o' || 4242)::uuid`).Scan(&orderID, &customer, &created); err != nil {
		t.Fatalf("pick order: %v", err)
	}
	ids := make([]string, 20)
	for i := range ids {
		ids[i] = orderID
	}
	ids[0] = id
	hash := []byte("0123456789abcdef0123456789abcdef")
	skus := []string{"SKU-00001", "SKU-00002"}
	secs := 30.0

	check(t, pool, `SELECT id FROM orders WHERE email = 'x@example.com'`, []query{
		{"Store.Get", `SELECT ` + orderColumns + ` FROM orders WHERE id = $1`, []any{orderID}},
		{"loadItems (one query for a whole page)", `SELECT order_id, sku, quantity, unit_price_cents FROM order_items
		WHERE order_id = ANY($1::uuid[]) ORDER BY order_id, sku`, []any{ids}},
		{"Store.List first page", `SELECT ` + orderColumns + ` FROM orders WHERE customer_id = $1
			ORDER BY created_at DESC, id DESC LIMIT $2`, []any{customer, 21}},
		{"Store.List after cursor", `SELECT ` + orderColumns + ` FROM orders WHERE customer_id = $1
			AND (created_at, id) < ($2, $3::uuid)
			ORDER BY created_at DESC, id DESC LIMIT $4`, []any{customer, created, orderID, 101}},
		{"Store.begin insertAll", `WITH k AS (
			INSERT INTO idempotency_keys (key, request_hash, order_id)
			VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING
			RETURNING order_id),
		o AS (
			INSERT INTO orders (id, customer_id, email, status, payment_method,
				total_cents, currency, created_at, updated_at)
			SELECT k.order_id, $4, $5, 'pending', $6, 0, $7, $8, $8 FROM k
			RETURNING id),
		i AS (
			INSERT INTO order_items (order_id, sku, quantity)
			SELECT o.id, t.sku, t.quantity FROM o, unnest($9::text[], $10::int[]) AS t(sku, quantity))
		SELECT count(*) FROM k`, []any{"key-43", hash, id, "cus_1", "a@example.com", "pm_card_ok", "USD", created, skus, []int32{1, 2}}},
		{"Store.claimExisting insertKey", `INSERT INTO idempotency_keys (key, request_hash, order_id)
			VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING`, []any{"key-42", hash, orderID}},
		{"Store.claimExisting get", `SELECT request_hash, order_id, status_code, response FROM idempotency_keys WHERE key = $1`, []any{"key-42"}},
		{"Store.claimExisting retake", `UPDATE idempotency_keys
				SET order_id = $2, status_code = NULL, response = NULL, updated_at = now()
				WHERE key = $1 AND status_code = 503`, []any{"key-42", orderID}},
		{"Store.claimExisting insertOrder", `INSERT INTO orders (id, customer_id, email, status, payment_method,
			total_cents, currency, created_at, updated_at)
			VALUES ($1, $2, $3, 'pending', $4, 0, $5, $6, $6)`, []any{id, "cus_1", "a@example.com", "pm_card_ok", "USD", created}},
		{"Store.claimExisting insertItems", `INSERT INTO order_items (order_id, sku, quantity)
			SELECT $1, sku, quantity FROM unnest($2::text[], $3::int[]) AS t(sku, quantity)`, []any{id, skus, []int32{1, 2}}},
		{"Store.lookupKey", `SELECT order_id, status_code, response FROM idempotency_keys WHERE key = $1`, []any{"key-42"}},
		{"Store.setPrices", `WITH o AS (
			UPDATE orders SET total_cents = $2, currency = $3, updated_at = now()
			WHERE id = $1 AND status = 'pending'
			RETURNING id)
		UPDATE order_items AS oi SET unit_price_cents = p.price
		FROM o, unnest($4::text[], $5::bigint[]) AS p(sku, price)
		WHERE oi.order_id = o.id AND oi.sku = p.sku`, []any{orderID, int64(100), "USD", skus, []int64{100, 200}}},
		{"Store.apply", `UPDATE orders SET status = $3,
				payment_id = COALESCE($4, payment_id),
				failure_reason = COALESCE($5, failure_reason),
				compensate_after = CASE WHEN $6::float8 IS NULL THEN compensate_after
					ELSE now() + make_interval(secs => $6::float8) END,
				updated_at = now()
			WHERE id = $1 AND status = $2
			RETURNING ` + orderColumns + `,
				ARRAY(SELECT sku FROM order_items i WHERE i.order_id = orders.id ORDER BY sku),
				ARRAY(SELECT quantity FROM order_items i WHERE i.order_id = orders.id ORDER BY sku),
				ARRAY(SELECT unit_price_cents FROM order_items i WHERE i.order_id = orders.id ORDER BY sku)`,
			[]any{orderID, "pending", "confirmed", "pay_1", nil, &secs}},
		{"Store.apply storeResponse", `UPDATE idempotency_keys SET status_code = $3, response = $4, updated_at = now()
				WHERE key = $1 AND order_id = $2`, []any{"key-42", orderID, 201, []byte(`{}`)}},
		{"Store.clearCompensation", `UPDATE orders SET compensate_after = NULL, needs_attention_at = NULL, compensation_error = NULL
		WHERE id = $1`, []any{orderID}},
		{"Store.failStale", `WITH stale AS (
				SELECT id FROM orders
				WHERE status = 'pending' AND created_at <= now() - make_interval(secs => $1::float8)
				ORDER BY created_at LIMIT 50
				FOR UPDATE SKIP LOCKED)
			UPDATE orders AS o SET status = 'failed', failure_reason = $2,
				compensate_after = now(), updated_at = now()
			FROM stale WHERE o.id = stale.id
			RETURNING o.id`, []any{secs, "saga_timeout"}},
		{"Store.failStale storeResponse", `UPDATE idempotency_keys SET status_code = 503, response = $2, updated_at = now()
			WHERE order_id = $1 AND status_code IS NULL`, []any{orderID, []byte(`{}`)}},
		{"Store.leaseDue", `UPDATE orders SET compensate_after = now() + make_interval(secs => $1::float8)
		WHERE id IN (
			SELECT id FROM orders
			WHERE compensate_after <= now() AND status NOT IN ('pending', 'confirmed')
			ORDER BY compensate_after LIMIT $2
			FOR UPDATE SKIP LOCKED)
		RETURNING id, compensation_attempts`, []any{secs, 8}},
		{"Store.recordCompensationFailure", `UPDATE orders SET compensation_attempts = compensation_attempts + 1,
			compensation_error = $2,
			compensate_after = CASE WHEN compensation_attempts + 1 >= $3 THEN NULL
				ELSE now() + make_interval(secs => $4::float8) END,
			needs_attention_at = CASE WHEN compensation_attempts + 1 >= $3 THEN now() END
		WHERE id = $1 AND compensate_after IS NOT NULL
		RETURNING compensation_attempts, needs_attention_at IS NOT NULL`, []any{orderID, "release: boom", 10, secs}},
		{"Store.retryCompensation", `UPDATE orders SET compensation_attempts = 0, needs_attention_at = NULL, compensate_after = now()
		WHERE id = $1 AND (needs_attention_at IS NOT NULL OR compensate_after IS NOT NULL)
		RETURNING ` + compensationColumns, []any{orderID}},
		{"Store.retryCompensation exists", `SELECT EXISTS (SELECT 1 FROM orders WHERE id = $1)`, []any{orderID}},
		{"Store.needingAttention first page", `SELECT ` + compensationColumns + ` FROM orders WHERE needs_attention_at IS NOT NULL
			ORDER BY needs_attention_at, id LIMIT $1`, []any{21}},
		{"Store.needingAttention after cursor", `SELECT ` + compensationColumns + ` FROM orders WHERE needs_attention_at IS NOT NULL
			AND (needs_attention_at, id) > ($1, $2::uuid)
			ORDER BY needs_attention_at, id LIMIT $3`, []any{created, orderID, 101}},
		{"Store.countNeedingAttention", `SELECT count(*) FROM orders WHERE needs_attention_at IS NOT NULL`, nil},
		{"outbox.Add", `INSERT INTO outbox (event_id, event_type, order_id, payload) VALUES ($1, $2, $3, $4)`,
			[]any{id, "order.confirmed", orderID, []byte(`{}`)}},
		{"Relay.PublishBatch pick", `
SELECT id, event_id::text, event_type, payload
FROM outbox
WHERE sent_at IS NULL
ORDER BY id
LIMIT $1
FOR UPDATE SKIP LOCKED`, []any{10}},
		{"Relay.PublishBatch markSent", `UPDATE outbox SET sent_at = now(), attempts = attempts + 1 WHERE id = ANY($1)`, []any{[]int64{1, 2, 3}}},
		{"Relay.PublishBatch markFailed", `UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1`, []any{int64(7), "boom"}},
		{"Store.PurgeKeys", `
DELETE FROM idempotency_keys WHERE key IN (
    SELECT key FROM idempotency_keys
    WHERE created_at < $1 AND status_code IS NOT NULL
    ORDER BY created_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED)`, []any{created, 1000}},
		{"outbox.Purge", `
DELETE FROM outbox WHERE id IN (
    SELECT id FROM outbox
    WHERE sent_at < $1
    ORDER BY sent_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED)`, []any{created, 1000}},
	})
}

// paymentColumns and intentColumns are copied from
// services/payment/internal/payment/store.go.
const (
	paymentColumns = `id::text, order_id::text, provider_charge_id, amount_cents, currency, method, status, created_at, updated_at`
	intentColumns  = `i.caller, i.key, i.id::text, i.order_id::text, i.amount_cents, i.currency, i.method,
	i.provider_key, k.created_at, k.created_at < clock_timestamp() - $1::bigint * interval '1 microsecond'`
)

func TestIndexes_Payment(t *testing.T) {
	t.Parallel()
	// 200k captured payments with their answered keys and intents, and a
	// few hundred intents whose outcome is unknown.
	const seed = `
INSERT INTO payments (id, order_id, provider_charge_id, amount_cents, currency, method, status, created_at, updated_at)
SELECT md5('p' || i)::uuid, md5('o' || i)::uuid, 'ch_' || i, 1500, 'USD', 'pm_card_ok',
       CASE WHEN i % 40 = 0 THEN 'refunded' ELSE 'captured' END,
       now() - i * interval '10 seconds', now() - i * interval '10 seconds'
FROM generate_series(1, 200000) AS i;
INSERT INTO idempotency_keys (caller, key, request_hash, status_code, response, created_at)
SELECT 'orderflow-order', 'pay-key-' || i, decode(md5('h' || i), 'hex'),
       CASE WHEN i % 1000 = 0 THEN NULL ELSE 201 END, '{}'::jsonb, now() - i * interval '10 seconds'
FROM generate_series(1, 200000) AS i;
INSERT INTO payment_intents (caller, key, id, order_id, amount_cents, currency, method, provider_key, state, created_at, updated_at)
SELECT 'orderflow-order', 'pay-key-' || i, md5('p' || i)::uuid, md5('o' || i)::uuid, 1500, 'USD', 'pm_card_ok',
       md5('pay-key-' || i), CASE WHEN i % 1000 = 0 THEN 'pending' ELSE 'captured' END,
       now() - i * interval '10 seconds', now() - i * interval '10 seconds'
FROM generate_series(1, 200000) AS i`
	pool := newDB(t, "payment", seed)
	requireVolume(t, pool, map[string]float64{"payments": 150_000, "idempotency_keys": 150_000, "payment_intents": 150_000})

	var payID, orderID string
	var token time.Time
	if err := pool.QueryRow(context.Background(),
		`SELECT id::text, order_id::text, created_at FROM payments WHERE id = md5('p' || 4242)::uuid`).Scan(&payID, &orderID, &token); err != nil {
		t.Fatalf("pick payment: %v", err)
	}
	hash := []byte("0123456789abcdef0123456789abcdef")
	const caller, key = "orderflow-order", "pay-key-42"
	newID := "c4ca4238-a0b9-2382-0dcc-509a6f75849b"

	check(t, pool, `SELECT id FROM payments WHERE method = 'pm_x'`, []query{
		{"Store.Claim insert", `
		WITH k AS (
			INSERT INTO idempotency_keys (caller, key, request_hash, created_at)
			VALUES ($1, $2, $3, clock_timestamp())
			ON CONFLICT (caller, key) DO NOTHING
			RETURNING caller, key, created_at),
		i AS (
			INSERT INTO payment_intents (caller, key, id, order_id, amount_cents, currency, method, provider_key, state, created_at, updated_at)
			SELECT caller, key, $4, $5, $6, $7, $8, $9, 'pending', created_at, created_at FROM k)
		SELECT created_at FROM k`, []any{caller, key, hash, newID, orderID, int64(100), "USD", "pm_card_ok", "pk"}},
		{"Store.Claim takeOver", `
		UPDATE idempotency_keys SET created_at = clock_timestamp(), parked = false
		WHERE caller = $1 AND key = $2 AND request_hash = $3 AND status_code IS NULL
		  AND (parked OR created_at < clock_timestamp() - $4::bigint * interval '1 microsecond')
		RETURNING created_at`, []any{caller, key, hash, int64(30_000_000)}},
		{"Store.Claim read", `SELECT request_hash, status_code, response FROM idempotency_keys WHERE caller = $1 AND key = $2`,
			[]any{caller, key}},
		{"Store.intentOf", `
		INSERT INTO payment_intents (caller, key, id, order_id, amount_cents, currency, method, provider_key, state)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending')
		ON CONFLICT (caller, key) DO UPDATE SET updated_at = now()
		RETURNING id::text, order_id::text, amount_cents, currency, method, provider_key`,
			[]any{caller, key, newID, orderID, int64(100), "USD", "pm_card_ok", "pk"}},
		{"Store.Decline", `
		WITH k AS (
			UPDATE idempotency_keys SET status_code = $4, response = $5, parked = false
			WHERE caller = $1 AND key = $2 AND created_at = $3 AND status_code IS NULL
			RETURNING caller, key),
		i AS (
			UPDATE payment_intents SET state = 'declined', updated_at = now()
			WHERE (caller, key) IN (SELECT caller, key FROM k))
		SELECT count(*) FROM k`, []any{caller, key, token, 402, `{}`}},
		{"Store.Capture", `
		WITH k AS (
			UPDATE idempotency_keys SET status_code = $4, response = $5, parked = false
			WHERE caller = $1 AND key = $2 AND status_code IS NULL AND ($3::timestamptz IS NULL OR created_at = $3)
			RETURNING caller, key),
		i AS (
			UPDATE payment_intents SET state = 'captured', provider_charge_id = $8, updated_at = $14
			WHERE (caller, key) IN (SELECT caller, key FROM k)),
		p AS (
			INSERT INTO payments (id, order_id, provider_charge_id, amount_cents, currency, method, status, created_at, updated_at)
			SELECT $6, $7, $8, $9, $10, $11, $12, $13, $14 FROM k)
		SELECT count(*) FROM k`,
			[]any{caller, key, token, 201, `{}`, newID, orderID, "ch_new", int64(100), "USD", "pm_card_ok", "captured", token, token}},
		{"Store.Park", `
		UPDATE idempotency_keys SET parked = true
		WHERE caller = $1 AND key = $2 AND created_at = $3 AND status_code IS NULL`, []any{caller, key, token}},
		{"Store.Release", `DELETE FROM idempotency_keys WHERE caller = $1 AND key = $2 AND created_at = $3 AND status_code IS NULL`,
			[]any{caller, key, token}},
		{"Store.PendingForOrder", `SELECT ` + intentColumns + `
		FROM payment_intents i JOIN idempotency_keys k ON (k.caller, k.key) = (i.caller, i.key)
		WHERE i.order_id = $2 AND i.state = 'pending' AND k.status_code IS NULL
		LIMIT 100`, []any{int64(60_000_000), orderID}},
		{"Store.Pending", `SELECT ` + intentColumns + `
		FROM payment_intents i JOIN idempotency_keys k ON (k.caller, k.key) = (i.caller, i.key)
		WHERE i.state = 'pending' AND k.status_code IS NULL
		  AND k.created_at < clock_timestamp() - $1::bigint * interval '1 microsecond'
		ORDER BY k.created_at
		LIMIT $2`, []any{int64(60_000_000), 100}},
		{"Store.PurgeKeys", `
		DELETE FROM idempotency_keys WHERE ctid IN (
			SELECT ctid FROM idempotency_keys
			WHERE status_code IS NOT NULL AND created_at < $1
			ORDER BY created_at
			LIMIT $2
			FOR UPDATE SKIP LOCKED)`, []any{time.Now().Add(-24 * time.Hour), 1000}},
		{"Store.Get", `SELECT ` + paymentColumns + ` FROM payments WHERE id = $1`, []any{payID}},
		{"Store.ListByOrder", `SELECT ` + paymentColumns + ` FROM payments WHERE order_id = $1
		ORDER BY created_at DESC, id DESC LIMIT 100`, []any{orderID}},
		{"Store.MarkRefunded", `
		UPDATE payments
		SET status = 'refunded',
		    updated_at = CASE WHEN status = 'refunded' THEN updated_at ELSE now() END
		WHERE id = $1
		RETURNING ` + paymentColumns, []any{payID}},
	})
}

func TestIndexes_Notification(t *testing.T) {
	t.Parallel()
	// 200k confirmed orders' worth of events: an invoice and an e-mail each
	// (all but a few e-mails sent), both recorded in the consumer ledger.
	const seed = `
INSERT INTO processed_events (consumer, event_id)
SELECT c, md5('e' || i)::uuid FROM generate_series(1, 200000) AS i, unnest(ARRAY['invoice', 'email']) AS c;
INSERT INTO invoices (number, order_id, event_id, total_cents, currency, lines, created_at)
SELECT i, md5('o' || i)::uuid, md5('e' || i)::uuid, 1500, 'USD',
       '[{"sku":"SKU-00001","quantity":1,"unit_price_cents":1500}]', now() - i * interval '10 seconds'
FROM generate_series(1, 200000) AS i;
UPDATE invoice_counter SET last = 200000;
INSERT INTO emails (id, event_id, order_id, "to", subject, kind, body, created_at, sent_at)
SELECT md5('m' || i)::uuid, md5('e' || i)::uuid, md5('o' || i)::uuid, 'c' || i || '@example.com',
       'Your order', 'order_confirmed', 'Thanks', now() - i * interval '10 seconds',
       CASE WHEN i % 1000 = 0 THEN NULL ELSE now() - i * interval '10 seconds' END
FROM generate_series(1, 200000) AS i`
	pool := newDB(t, "notification", seed)
	requireVolume(t, pool, map[string]float64{"processed_events": 300_000, "invoices": 150_000, "emails": 150_000})

	orderID := "" // an order with an invoice and an e-mail
	if err := pool.QueryRow(context.Background(), `SELECT md5('o' || 4242)::uuid::text`).Scan(&orderID); err != nil {
		t.Fatalf("pick order: %v", err)
	}
	eventID := "c4ca4238-a0b9-2382-0dcc-509a6f75849b"

	check(t, pool, `SELECT id FROM emails WHERE "to" = 'x@example.com'`, []query{
		{"Store.CreateInvoice", `WITH recorded AS (
			INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2)
			ON CONFLICT (consumer, event_id) DO NOTHING
			RETURNING event_id),
		numbered AS (
			UPDATE invoice_counter SET last = last + 1
			WHERE EXISTS (SELECT 1 FROM recorded)
			RETURNING last)
		INSERT INTO invoices (number, order_id, event_id, total_cents, currency, lines)
		SELECT numbered.last, $3, $2, $4, $5, $6 FROM numbered
		RETURNING number, created_at`, []any{"invoice", eventID, orderID, int64(1500), "USD", `[]`}},
		{"Store.SendEmailOnce insert", `INSERT INTO emails (id, event_id, order_id, "to", subject, kind, body)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING`,
			[]any{eventID, eventID, orderID, "a@example.com", "s", "order_confirmed", "b"}},
		{"Store.SendEmailOnce lock", `SELECT sent_at FROM emails WHERE event_id = $1 FOR UPDATE`, []any{eventID}},
		{"Store.SendEmailOnce markSent", `UPDATE emails SET sent_at = now() WHERE event_id = $1`, []any{eventID}},
		{"Store.InvoicesByOrder", `SELECT number, order_id::text, event_id::text, total_cents, currency, lines, created_at
		FROM invoices WHERE order_id = $1 ORDER BY number`, []any{orderID}},
		{"Store.SentEmailsByOrder", `SELECT id::text, event_id::text, order_id::text, "to", subject, kind, body, sent_at
		FROM emails WHERE order_id = $1 AND sent_at IS NOT NULL ORDER BY sent_at, id`, []any{orderID}},
		{"Store.PurgeProcessed", `
DELETE FROM processed_events WHERE (consumer, event_id) IN (
    SELECT consumer, event_id FROM processed_events
    WHERE processed_at < $1
    ORDER BY processed_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED)`, []any{time.Now().Add(-14 * 24 * time.Hour), 1000}},
	})
}
