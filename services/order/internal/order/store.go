package order

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/pkg/events"
	"github.com/orderflow/orderflow/services/order/internal/outbox"
)

// Store keeps orders, their items and idempotency keys in Postgres.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a Store over pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// orderColumns is the column list every order query returns, in scanOrder's order.
const orderColumns = `id, customer_id, email, status, payment_method, total_cents, currency,
	payment_id, failure_reason, created_at, updated_at`

// scanOrder scans orderColumns, then whatever extra columns the query
// returns after them into extra.
func scanOrder(row pgx.Row, extra ...any) (Order, error) {
	var o Order
	var email, paymentID, reason *string
	err := row.Scan(append([]any{&o.ID, &o.CustomerID, &email, &o.Status, &o.PaymentMethod, &o.TotalCents, &o.Currency,
		&paymentID, &reason, &o.CreatedAt, &o.UpdatedAt}, extra...)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return Order{}, ErrNotFound
	}
	if err != nil {
		return Order{}, err
	}
	o.Email, o.PaymentID, o.FailureReason = deref(email), deref(paymentID), deref(reason)
	o.CreatedAt, o.UpdatedAt = o.CreatedAt.UTC(), o.UpdatedAt.UTC()
	return o, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// loadItems fills the items of orders with one query, whatever their number.
func (s *Store) loadItems(ctx context.Context, orders []Order) error {
	if len(orders) == 0 {
		return nil
	}
	ids := make([]string, len(orders))
	index := make(map[string]int, len(orders))
	for i, o := range orders {
		ids[i] = o.ID
		index[o.ID] = i
		orders[i].Items = []Item{}
	}
	const q1 = `SELECT order_id, sku, quantity, unit_price_cents FROM order_items
		WHERE order_id = ANY($1::uuid[]) ORDER BY order_id, sku`
	rows, err := s.pool.Query(ctx, q1, ids)
	if err != nil {
		return fmt.Errorf("select items: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var orderID string
		var it Item
		if err := rows.Scan(&orderID, &it.SKU, &it.Quantity, &it.UnitPriceCents); err != nil {
			return fmt.Errorf("scan item: %w", err)
		}
		if i, ok := index[orderID]; ok {
			orders[i].Items = append(orders[i].Items, it)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("select items: %w", err)
	}
	return nil
}

// Get returns one order with its items.
func (s *Store) Get(ctx context.Context, id string) (Order, error) {
	const q = `SELECT ` + orderColumns + ` FROM orders WHERE id = $1`
	o, err := scanOrder(s.pool.QueryRow(ctx, q, id))
	if err != nil {
		return Order{}, fmt.Errorf("get order %s: %w", id, err)
	}
	orders := []Order{o}
	if err := s.loadItems(ctx, orders); err != nil {
		return Order{}, err
	}
	return orders[0], nil
}

// Cursor is a position in a keyset-paginated list: the sort time and id of
// the last row returned (created_at of an order in a customer's list,
// needs_attention_at of a parked compensation).
type Cursor struct {
	CreatedAt time.Time
	ID        string
}

// List returns up to limit orders of customerID, newest first, after cursor
// (nil for the first page). Items are loaded in one query.
func (s *Store) List(ctx context.Context, customerID string, after *Cursor, limit int) ([]Order, error) {
	var rows pgx.Rows
	var err error
	if after == nil {
		const q = `SELECT ` + orderColumns + ` FROM orders WHERE customer_id = $1
			ORDER BY created_at DESC, id DESC LIMIT $2`
		rows, err = s.pool.Query(ctx, q, customerID, limit)
	} else {
		const q = `SELECT ` + orderColumns + ` FROM orders WHERE customer_id = $1
			AND (created_at, id) < ($2, $3::uuid)
			ORDER BY created_at DESC, id DESC LIMIT $4`
		rows, err = s.pool.Query(ctx, q, customerID, after.CreatedAt, after.ID, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	orders, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Order, error) { return scanOrder(r) })
	if err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	if err := s.loadItems(ctx, orders); err != nil {
		return nil, err
	}
	return orders, nil
}

// claimState is what begin found for an idempotency key.
type claimState int

const (
	// claimStarted: this request owns the key; its pending order is stored.
	claimStarted claimState = iota
	// claimMismatch: the key was used with a different request.
	claimMismatch
	// claimDone: the key holds a final response to replay.
	claimDone
	// claimInProgress: another request owns the key and is still running.
	claimInProgress
)

type claim struct {
	state   claimState
	orderID string
	// outcome is the key's final outcome, for claimDone.
	outcome Outcome
}

// begin claims key for a request with hash and stores its pending order o,
// in one transaction. A key whose stored response is a 503 is claimed again
// (with o as its new order), so a client may retry an order that failed
// because a dependency was down.
//
// A new key, by far the common case, costs one statement: the key, the
// order and its items are inserted together, and nothing at all when the
// key exists. Only then does the transaction below sort out what the key
// holds.
func (s *Store) begin(ctx context.Context, key string, hash []byte, o Order) (claim, error) {
	skus := make([]string, len(o.Items))
	qty := make([]int32, len(o.Items))
	for i, it := range o.Items {
		skus[i], qty[i] = it.SKU, int32(it.Quantity)
	}
	// One statement is one transaction. The order_items foreign key is
	// checked at its end, when the order row exists.
	const insertAll = `WITH k AS (
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
		SELECT count(*) FROM k`
	var inserted int
	if err := s.pool.QueryRow(ctx, insertAll, key, hash, o.ID, o.CustomerID, nullable(o.Email),
		o.PaymentMethod, o.Currency, o.CreatedAt, skus, qty).Scan(&inserted); err != nil {
		return claim{}, fmt.Errorf("begin order: %w", err)
	}
	if inserted == 1 {
		return claim{state: claimStarted, orderID: o.ID}, nil
	}
	return s.claimExisting(ctx, key, hash, o, skus, qty)
}

// claimExisting is begin for a key that already exists: a replay, a reuse
// with another body, a request still running, or a 503 to retry.
func (s *Store) claimExisting(ctx context.Context, key string, hash []byte, o Order, skus []string, qty []int32) (claim, error) {
	var c claim
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		c = claim{}
		const insertKey = `INSERT INTO idempotency_keys (key, request_hash, order_id)
			VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING`
		tag, err := tx.Exec(ctx, insertKey, key, hash, o.ID)
		if err != nil {
			return fmt.Errorf("insert idempotency key: %w", err)
		}
		if tag.RowsAffected() == 0 {
			const get = `SELECT request_hash, order_id, status_code, response FROM idempotency_keys WHERE key = $1`
			var stored, response []byte
			var status *int
			if err := tx.QueryRow(ctx, get, key).Scan(&stored, &c.orderID, &status, &response); err != nil {
				return fmt.Errorf("select idempotency key: %w", err)
			}
			if !bytes.Equal(stored, hash) {
				c.state = claimMismatch
				return nil
			}
			if status == nil || *status != keyFailed {
				c, err = answered(c.orderID, status, response)
				return err
			}
			// Only one retry may take over a failed attempt: the WHERE
			// re-checks status_code after any concurrent claim commits.
			const retake = `UPDATE idempotency_keys
				SET order_id = $2, status_code = NULL, response = NULL, updated_at = now()
				WHERE key = $1 AND status_code = 503`
			tag, err := tx.Exec(ctx, retake, key, o.ID)
			if err != nil {
				return fmt.Errorf("retake idempotency key: %w", err)
			}
			if tag.RowsAffected() == 0 {
				c.state = claimInProgress
				return nil
			}
		}
		const insertOrder = `INSERT INTO orders (id, customer_id, email, status, payment_method,
			total_cents, currency, created_at, updated_at)
			VALUES ($1, $2, $3, 'pending', $4, 0, $5, $6, $6)`
		if _, err := tx.Exec(ctx, insertOrder, o.ID, o.CustomerID, nullable(o.Email), o.PaymentMethod,
			o.Currency, o.CreatedAt); err != nil {
			return fmt.Errorf("insert order: %w", err)
		}
		const insertItems = `INSERT INTO order_items (order_id, sku, quantity)
			SELECT $1, sku, quantity FROM unnest($2::text[], $3::int[]) AS t(sku, quantity)`
		if _, err := tx.Exec(ctx, insertItems, o.ID, skus, qty); err != nil {
			return fmt.Errorf("insert order items: %w", err)
		}
		c.state, c.orderID = claimStarted, o.ID
		return nil
	})
	if err != nil {
		return claim{}, fmt.Errorf("begin order: %w", err)
	}
	return c, nil
}

// lookupKey reports whether the request owning key has finished.
func (s *Store) lookupKey(ctx context.Context, key string) (claim, error) {
	const q = `SELECT order_id, status_code, response FROM idempotency_keys WHERE key = $1`
	var orderID string
	var status *int
	var response []byte
	if err := s.pool.QueryRow(ctx, q, key).Scan(&orderID, &status, &response); err != nil {
		return claim{}, fmt.Errorf("lookup idempotency key: %w", err)
	}
	return answered(orderID, status, response)
}

// answered is the claim of a key whose request is still running (status
// NULL) or has its final outcome stored.
func answered(orderID string, status *int, response []byte) (claim, error) {
	if status == nil {
		return claim{state: claimInProgress, orderID: orderID}, nil
	}
	out, err := decodeOutcome(*status, response)
	if err != nil {
		return claim{}, fmt.Errorf("idempotency key of order %s: %w", orderID, err)
	}
	return claim{state: claimDone, orderID: orderID, outcome: out}, nil
}

// setPrices stores inventory's prices and the order total on a pending
// order, in one statement (so one transaction). errLostRace: the order is
// no longer pending.
func (s *Store) setPrices(ctx context.Context, o Order) error {
	skus := make([]string, len(o.Items))
	prices := make([]int64, len(o.Items))
	for i, it := range o.Items {
		skus[i], prices[i] = it.SKU, it.UnitPriceCents
	}
	const q = `WITH o AS (
			UPDATE orders SET total_cents = $2, currency = $3, updated_at = now()
			WHERE id = $1 AND status = 'pending'
			RETURNING id)
		UPDATE order_items AS oi SET unit_price_cents = p.price
		FROM o, unnest($4::text[], $5::bigint[]) AS p(sku, price)
		WHERE oi.order_id = o.id AND oi.sku = p.sku`
	tag, err := s.pool.Exec(ctx, q, o.ID, o.TotalCents, o.Currency, skus, prices)
	if err == nil && tag.RowsAffected() == 0 {
		// Every order has items, so no row means no pending order.
		err = errLostRace
	}
	if err != nil {
		return fmt.Errorf("set prices of order %s: %w", o.ID, err)
	}
	return nil
}

// transition is one conditional status change.
type transition struct {
	orderID       string
	from, to      string
	paymentID     string // kept when empty
	failureReason string // kept when empty
	// compensate schedules the recovery loop's compensation compensateIn
	// from now (at once when 0); without it the schedule is kept.
	compensate   bool
	compensateIn time.Duration
	// event, when set, is the outbox event type written with the change.
	event string
	// key, when set, is the idempotency key that keeps the outcome: the
	// updated order, and skus for a rejection.
	key  string
	skus []string
}

// apply changes the order's status from t.from to t.to in one transaction
// with its outbox event and, for a saga, its outcome stored with t.key. It
// returns the updated order, or errLostRace when the order is no longer in
// t.from.
func (s *Store) apply(ctx context.Context, t transition) (Order, error) {
	var o Order
	var secs *float64
	if t.compensate {
		secs = ptr(t.compensateIn.Seconds())
	}
	// Four round trips with BEGIN and COMMIT: the UPDATE returns the order
	// with its items (so the event and the outcome can be built), then the
	// outbox row and the stored outcome go out as one batch.
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		o, err = updateStatus(ctx, tx, t, secs)
		if err != nil {
			return err
		}
		var b pgx.Batch
		if t.event != "" {
			if err := outbox.Queue(ctx, &b, newEvent(t.event, o)); err != nil {
				return err
			}
		}
		if t.key != "" {
			status, record, err := encodeOutcome(Outcome{Order: o, SKUs: t.skus})
			if err != nil {
				return err
			}
			const storeResponse = `UPDATE idempotency_keys SET status_code = $3, response = $4, updated_at = now()
				WHERE key = $1 AND order_id = $2`
			b.Queue(storeResponse, t.key, o.ID, status, record)
		}
		if b.Len() == 0 {
			return nil
		}
		if err := tx.SendBatch(ctx, &b).Close(); err != nil {
			return fmt.Errorf("outbox event and outcome: %w", err)
		}
		return nil
	})
	if err != nil {
		return Order{}, fmt.Errorf("order %s %s→%s: %w", t.orderID, t.from, t.to, err)
	}
	return o, nil
}

// updateStatus is apply's UPDATE: it returns the order with its items, or
// errLostRace when the order is no longer in t.from. secs, when set,
// schedules the compensation that many seconds from now.
func updateStatus(ctx context.Context, tx pgx.Tx, t transition, secs *float64) (Order, error) {
	const q = `UPDATE orders SET status = $3,
			payment_id = COALESCE($4, payment_id),
			failure_reason = COALESCE($5, failure_reason),
			compensate_after = CASE WHEN $6::float8 IS NULL THEN compensate_after
				ELSE now() + make_interval(secs => $6::float8) END,
			updated_at = now()
		WHERE id = $1 AND status = $2
		RETURNING ` + orderColumns + `,
			ARRAY(SELECT sku FROM order_items i WHERE i.order_id = orders.id ORDER BY sku),
			ARRAY(SELECT quantity FROM order_items i WHERE i.order_id = orders.id ORDER BY sku),
			ARRAY(SELECT unit_price_cents FROM order_items i WHERE i.order_id = orders.id ORDER BY sku)`
	var skus []string
	var qtys []int32
	var prices []int64
	o, err := scanOrder(tx.QueryRow(ctx, q, t.orderID, t.from, t.to, nullable(t.paymentID),
		nullable(t.failureReason), secs), &skus, &qtys, &prices)
	if errors.Is(err, ErrNotFound) {
		return Order{}, errLostRace
	}
	if err != nil {
		return Order{}, err
	}
	if len(qtys) != len(skus) || len(prices) != len(skus) {
		return Order{}, fmt.Errorf("order %s: %d skus, %d quantities, %d prices", o.ID, len(skus), len(qtys), len(prices))
	}
	o.Items = make([]Item, len(skus))
	for i := range skus {
		o.Items[i] = Item{SKU: skus[i], Quantity: int(qtys[i]), UnitPriceCents: prices[i]}
	}
	return o, nil
}

// The status_code column of an answered idempotency key: the HTTP status
// the outcome is answered with. The column predates the structured
// outcome in the response column; the retention index reads it, and a key
// whose order failed (503) is the one a retry may take over.
const (
	keyConfirmed = 201
	keyDeclined  = 402
	keyRejected  = 409
	keyFailed    = 503
)

// failureRecord is a failed order's outcome as its key keeps it in the
// response column (a confirmed order is kept as the API shows it,
// orderResponse). Its members are named as the problem the client was
// answered with names them, so keys answered before the outcome was kept
// structured, which hold that problem, read the same.
type failureRecord struct {
	OrderID     string   `json:"order_id"`
	Code        string   `json:"code,omitempty"`
	DeclineCode string   `json:"decline_code,omitempty"`
	SKUs        []string `json:"skus,omitempty"`
}

// encodeOutcome is the status_code and response columns of out.
func encodeOutcome(out Outcome) (int, []byte, error) {
	o := out.Order
	var status int
	var v any
	switch o.Status {
	case StatusConfirmed:
		status, v = keyConfirmed, newOrderResponse(o)
	case StatusRejected:
		status, v = keyRejected, failureRecord{OrderID: o.ID, Code: o.FailureReason, SKUs: out.SKUs}
	case StatusPaymentFailed:
		status, v = keyDeclined, failureRecord{OrderID: o.ID, DeclineCode: o.FailureReason}
	default:
		status, v = keyFailed, failureRecord{OrderID: o.ID}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return 0, nil, fmt.Errorf("encode outcome: %w", err)
	}
	return status, b, nil
}

// decodeOutcome is the outcome encodeOutcome stored.
func decodeOutcome(status int, response []byte) (Outcome, error) {
	if status == keyConfirmed {
		var o orderResponse
		if err := json.Unmarshal(response, &o); err != nil {
			return Outcome{}, fmt.Errorf("decode outcome: %w", err)
		}
		return Outcome{Order: o.order()}, nil
	}
	var f failureRecord
	if err := json.Unmarshal(response, &f); err != nil {
		return Outcome{}, fmt.Errorf("decode outcome: %w", err)
	}
	o := Order{ID: f.OrderID, Status: StatusFailed}
	switch status {
	case keyRejected:
		o.Status, o.FailureReason = StatusRejected, f.Code
	case keyDeclined:
		o.Status, o.FailureReason = StatusPaymentFailed, f.DeclineCode
	}
	return Outcome{Order: o, SKUs: f.SKUs}, nil
}

// newEvent builds the outbox event announcing o's new status.
func newEvent(typ string, o Order) events.Order {
	items := make([]events.Item, len(o.Items))
	for i, it := range o.Items {
		items[i] = events.Item{SKU: it.SKU, Quantity: it.Quantity, UnitPriceCents: it.UnitPriceCents}
	}
	return events.Order{
		ID:            uuid.Must(uuid.NewV7()).String(),
		Type:          typ,
		OrderID:       o.ID,
		CustomerID:    o.CustomerID,
		Email:         o.Email,
		Status:        o.Status,
		Items:         items,
		TotalCents:    o.TotalCents,
		Currency:      o.Currency,
		FailureReason: o.FailureReason,
		OccurredAt:    o.UpdatedAt,
	}
}

// clearCompensation records that an order's compensation is done. The
// attempt count stays, as its history.
func (s *Store) clearCompensation(ctx context.Context, id string) error {
	const q = `UPDATE orders SET compensate_after = NULL, needs_attention_at = NULL, compensation_error = NULL
		WHERE id = $1`
	if _, err := s.pool.Exec(ctx, q, id); err != nil {
		return fmt.Errorf("clear compensation of %s: %w", id, err)
	}
	return nil
}

// staleOrder is an order failStale failed.
type staleOrder struct {
	id        string
	createdAt time.Time
}

// failStale fails pending orders older than age, whose saga must have died
// with its process, and schedules their compensation. Their idempotency key
// keeps the outcome failed (a 503), so the client may retry with the
// same key. SKIP LOCKED lets replicas run this side by side, and a live saga
// finishing at the same moment loses or wins cleanly on the row lock.
func (s *Store) failStale(ctx context.Context, age time.Duration) ([]staleOrder, error) {
	var failed []staleOrder
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		const q = `WITH stale AS (
				SELECT id FROM orders
				WHERE status = 'pending' AND created_at <= now() - make_interval(secs => $1::float8)
				ORDER BY created_at LIMIT 50
				FOR UPDATE SKIP LOCKED)
			UPDATE orders AS o SET status = 'failed', failure_reason = $2,
				compensate_after = now(), updated_at = now()
			FROM stale WHERE o.id = stale.id
			RETURNING o.id, o.created_at`
		rows, err := tx.Query(ctx, q, age.Seconds(), ReasonSagaTimeout)
		if err != nil {
			return err
		}
		failed, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (staleOrder, error) {
			var o staleOrder
			err := r.Scan(&o.id, &o.createdAt)
			return o, err
		})
		if err != nil {
			return err
		}
		const storeResponse = `UPDATE idempotency_keys SET status_code = 503, response = $2, updated_at = now()
			WHERE order_id = $1 AND status_code IS NULL`
		for _, o := range failed {
			_, record, err := encodeOutcome(Outcome{Order: Order{ID: o.id, Status: StatusFailed}})
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, storeResponse, o.id, record); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("fail stale orders: %w", err)
	}
	return failed, nil
}

// dueCompensation is an order whose compensation the recovery loop leased.
type dueCompensation struct {
	orderID string
	// attempts is how many attempts failed before this one.
	attempts int
}

// leaseDue returns up to limit orders whose compensation is due and pushes
// their compensate_after lease ahead, so no other replica takes them while
// this one works; a crash just lets the lease run out. Parked compensations
// (needs attention) have no compensate_after and are never leased.
func (s *Store) leaseDue(ctx context.Context, lease time.Duration, limit int) ([]dueCompensation, error) {
	const q = `UPDATE orders SET compensate_after = now() + make_interval(secs => $1::float8)
		WHERE id IN (
			SELECT id FROM orders
			WHERE compensate_after <= now() AND status NOT IN ('pending', 'confirmed')
			ORDER BY compensate_after LIMIT $2
			FOR UPDATE SKIP LOCKED)
		RETURNING id, compensation_attempts`
	rows, err := s.pool.Query(ctx, q, lease.Seconds(), limit)
	if err != nil {
		return nil, fmt.Errorf("lease compensations: %w", err)
	}
	due, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (dueCompensation, error) {
		var d dueCompensation
		err := r.Scan(&d.orderID, &d.attempts)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("lease compensations: %w", err)
	}
	return due, nil
}

// recordCompensationFailure counts a failed attempt of the order's
// compensation with its error. Below maxAttempts failures the next attempt
// is due retryIn from now; at maxAttempts the compensation is parked: no
// longer due, needing attention since now. It reports the attempts counted
// so far and whether this failure parked it; an order whose compensation is
// no longer outstanding (done meanwhile) is left alone (0, false).
func (s *Store) recordCompensationFailure(ctx context.Context, id, lastError string, retryIn time.Duration, maxAttempts int) (attempts int, parked bool, err error) {
	// Every SET expression sees the row as it was before the UPDATE.
	const q = `UPDATE orders SET compensation_attempts = compensation_attempts + 1,
			compensation_error = $2,
			compensate_after = CASE WHEN compensation_attempts + 1 >= $3 THEN NULL
				ELSE now() + make_interval(secs => $4::float8) END,
			needs_attention_at = CASE WHEN compensation_attempts + 1 >= $3 THEN now() END
		WHERE id = $1 AND compensate_after IS NOT NULL
		RETURNING compensation_attempts, needs_attention_at IS NOT NULL`
	err = s.pool.QueryRow(ctx, q, id, lastError, maxAttempts, retryIn.Seconds()).Scan(&attempts, &parked)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("record compensation failure of %s: %w", id, err)
	}
	return attempts, parked, nil
}

// postponeCompensation makes the order's outstanding compensation due
// retryIn from now without counting a failed attempt; an order whose
// compensation is no longer outstanding is left alone.
func (s *Store) postponeCompensation(ctx context.Context, id string, retryIn time.Duration) error {
	const q = `UPDATE orders SET compensate_after = now() + make_interval(secs => $2::float8)
		WHERE id = $1 AND compensate_after IS NOT NULL`
	if _, err := s.pool.Exec(ctx, q, id, retryIn.Seconds()); err != nil {
		return fmt.Errorf("postpone compensation of %s: %w", id, err)
	}
	return nil
}

// compensationColumns is the column list of a Compensation, in
// scanCompensation's order.
const compensationColumns = `id, status, compensation_attempts, compensation_error, needs_attention_at`

func scanCompensation(row pgx.Row) (Compensation, error) {
	var c Compensation
	var lastError *string
	var since *time.Time
	if err := row.Scan(&c.OrderID, &c.Status, &c.Attempts, &lastError, &since); err != nil {
		return Compensation{}, err
	}
	c.LastError = deref(lastError)
	if since != nil {
		c.NeedsAttentionSince = since.UTC()
	}
	return c, nil
}

// retryCompensation makes the order's outstanding compensation, parked or
// waiting out its backoff, due now with its attempt count reset: an
// operator fixed what made it fail. ErrNoCompensation when the order has
// none outstanding, ErrNotFound when there is no such order.
func (s *Store) retryCompensation(ctx context.Context, id string) (Compensation, error) {
	const q = `UPDATE orders SET compensation_attempts = 0, needs_attention_at = NULL, compensate_after = now()
		WHERE id = $1 AND (needs_attention_at IS NOT NULL OR compensate_after IS NOT NULL)
		RETURNING ` + compensationColumns
	c, err := scanCompensation(s.pool.QueryRow(ctx, q, id))
	if errors.Is(err, pgx.ErrNoRows) {
		const exists = `SELECT EXISTS (SELECT 1 FROM orders WHERE id = $1)`
		var found bool
		if err := s.pool.QueryRow(ctx, exists, id).Scan(&found); err != nil {
			return Compensation{}, fmt.Errorf("retry compensation of %s: %w", id, err)
		}
		err = ErrNotFound
		if found {
			err = ErrNoCompensation
		}
	}
	if err != nil {
		return Compensation{}, fmt.Errorf("retry compensation of %s: %w", id, err)
	}
	return c, nil
}

// needingAttention returns up to limit parked compensations, longest
// parked first, after cursor (nil for the first page).
func (s *Store) needingAttention(ctx context.Context, after *Cursor, limit int) ([]Compensation, error) {
	var rows pgx.Rows
	var err error
	if after == nil {
		const q = `SELECT ` + compensationColumns + ` FROM orders WHERE needs_attention_at IS NOT NULL
			ORDER BY needs_attention_at, id LIMIT $1`
		rows, err = s.pool.Query(ctx, q, limit)
	} else {
		const q = `SELECT ` + compensationColumns + ` FROM orders WHERE needs_attention_at IS NOT NULL
			AND (needs_attention_at, id) > ($1, $2::uuid)
			ORDER BY needs_attention_at, id LIMIT $3`
		rows, err = s.pool.Query(ctx, q, after.CreatedAt, after.ID, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("list compensations needing attention: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Compensation, error) { return scanCompensation(r) })
	if err != nil {
		return nil, fmt.Errorf("list compensations needing attention: %w", err)
	}
	return list, nil
}

// countNeedingAttention counts the parked compensations.
func (s *Store) countNeedingAttention(ctx context.Context) (int, error) {
	const q = `SELECT count(*) FROM orders WHERE needs_attention_at IS NOT NULL`
	var n int
	if err := s.pool.QueryRow(ctx, q).Scan(&n); err != nil {
		return 0, fmt.Errorf("count compensations needing attention: %w", err)
	}
	return n, nil
}

// Ping checks that the database answers, for readiness.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// PurgeKeys deletes at most limit answered idempotency keys created before
// before, oldest first; a key whose request is still running is kept. A
// client that retries with the same key after that gets a new order, as
// with any payment API whose keys expire (docs/patterns/idempotency.md).
func (s *Store) PurgeKeys(ctx context.Context, before time.Time, limit int) (int64, error) {
	const q = `
DELETE FROM idempotency_keys WHERE key IN (
    SELECT key FROM idempotency_keys
    WHERE created_at < $1 AND status_code IS NOT NULL
    ORDER BY created_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED)`
	tag, err := s.pool.Exec(ctx, q, before, limit)
	if err != nil {
		return 0, fmt.Errorf("purge idempotency keys: %w", err)
	}
	return tag.RowsAffected(), nil
}

func ptr[T any](v T) *T { return &v }
