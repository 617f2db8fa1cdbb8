package inventory

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Store keeps products and reservations in Postgres. Every write that touches
// stock locks the product rows in sku order, so concurrent reservations,
// releases and sweeps never deadlock, and the CHECK on products.available
// guarantees stock never goes below zero.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a Store over pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// querier is what both the pool and a transaction offer for reads.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Ping reports whether the database answers, for /readyz.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Seed inserts the demo products SKU-00001 … SKU-n in one statement. Existing
// rows are left alone, so seeding on every start-up is cheap and safe. It
// returns how many rows were inserted.
func (s *Store) Seed(ctx context.Context, n int) (int64, error) {
	// lpad with at least 5 digits matches fmt "SKU-%05d" (lpad would truncate
	// a longer number, hence the greatest()).
	const q = `
INSERT INTO products (sku, name, price_cents, currency, available)
SELECT 'SKU-' || lpad(i::text, greatest(5, length(i::text)), '0'),
       'Product ' || lpad(i::text, greatest(5, length(i::text)), '0'),
       100 + (i::bigint * 7919) % 99900,
       'USD',
       1000000
FROM generate_series(1, $1::int) AS i
ON CONFLICT (sku) DO NOTHING`
	// A bulk load of a whole catalogue may take longer than the pool's
	// statement_timeout, which is there for requests.
	var seeded int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL statement_timeout = 0"); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, q, n)
		seeded = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("seed products: %w", err)
	}
	return seeded, nil
}

// Product returns one product.
func (s *Store) Product(ctx context.Context, sku string) (Product, error) {
	const q = `SELECT sku, name, price_cents, currency, available FROM products WHERE sku = $1`
	var p Product
	err := s.pool.QueryRow(ctx, q, sku).Scan(&p.SKU, &p.Name, &p.PriceCents, &p.Currency, &p.Available)
	if errors.Is(err, pgx.ErrNoRows) {
		return Product{}, ErrNotFound
	}
	if err != nil {
		return Product{}, fmt.Errorf("select product: %w", err)
	}
	return p, nil
}

// Products returns up to limit products with a sku greater than after, in sku
// order (keyset pagination on the primary key).
func (s *Store) Products(ctx context.Context, after string, limit int) ([]Product, error) {
	const q = `
SELECT sku, name, price_cents, currency, available
FROM products
WHERE sku > $1
ORDER BY sku
LIMIT $2`
	rows, err := s.pool.Query(ctx, q, after, limit)
	if err != nil {
		return nil, fmt.Errorf("select products: %w", err)
	}
	ps, err := pgx.CollectRows(rows, scanProduct)
	if err != nil {
		return nil, fmt.Errorf("select products: %w", err)
	}
	return ps, nil
}

// SetStock sets a product's available stock and returns the product.
func (s *Store) SetStock(ctx context.Context, sku string, available int) (Product, error) {
	const q = `
UPDATE products SET available = $2, updated_at = now()
WHERE sku = $1
RETURNING sku, name, price_cents, currency, available`
	var p Product
	err := s.pool.QueryRow(ctx, q, sku, available).Scan(&p.SKU, &p.Name, &p.PriceCents, &p.Currency, &p.Available)
	if errors.Is(err, pgx.ErrNoRows) {
		return Product{}, ErrNotFound
	}
	if err != nil {
		return Product{}, fmt.Errorf("update stock: %w", err)
	}
	return p, nil
}

// Reserve holds stock for every item of an order, all or nothing, in one
// transaction. created is false when a reservation for orderID already
// existed: it is returned as it is, whatever its status, and nothing changes.
// A *StockError means nothing was reserved and no reservation row remains.
func (s *Store) Reserve(ctx context.Context, orderID uuid.UUID, items []Item, ttl time.Duration) (r Reservation, created bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// A concurrent reserve for the same order waits here on the primary
		// key until the first one commits or rolls back.
		// The reservation row and the product locks go out as one batch,
		// one round trip: a replay (the row exists) locks the products
		// for nothing, and the common case saves a round trip.
		const insert = `
INSERT INTO reservations (order_id, status, expires_at)
VALUES ($1, 'reserved', now() + $2::bigint * interval '1 microsecond')
ON CONFLICT (order_id) DO NOTHING
RETURNING expires_at`
		skus := sortedSKUs(items)
		var b pgx.Batch
		var expiresAt time.Time
		inserted := true
		b.Queue(insert, orderID, ttl.Microseconds()).QueryRow(func(row pgx.Row) error {
			err := row.Scan(&expiresAt)
			if errors.Is(err, pgx.ErrNoRows) {
				inserted, err = false, nil
			}
			if err != nil {
				return fmt.Errorf("insert reservation: %w", err)
			}
			return nil
		})
		bySKU := queueLockProducts(&b, skus)
		if err := tx.SendBatch(ctx, &b).Close(); err != nil {
			return err
		}
		if !inserted {
			var err error
			r, err = loadReservation(ctx, tx, orderID)
			return err
		}
		// Returning the error rolls back, taking the reservation row with it.
		if err := checkStock(items, bySKU); err != nil {
			return err
		}

		want := make(map[string]int, len(items))
		for _, it := range items {
			want[it.SKU] = it.Quantity
		}
		r = Reservation{OrderID: orderID, Status: StatusReserved, ExpiresAt: expiresAt.UTC()}
		for _, sku := range skus {
			r.Items = append(r.Items, ReservedItem{SKU: sku, Quantity: want[sku], UnitPriceCents: bySKU[sku].PriceCents})
		}
		created = true
		return takeStock(ctx, tx, r)
	})
	if err != nil {
		return Reservation{}, false, fmt.Errorf("reserve: %w", err)
	}
	return r, created, nil
}

// queueLockProducts queues on b the statement that locks the product rows
// of skus until the transaction ends, in SKU order so concurrent
// reservations never deadlock; once the batch is closed, the map it
// returns holds them by SKU (an unknown SKU is absent).
func queueLockProducts(b *pgx.Batch, skus []string) map[string]Product {
	const lock = `
SELECT sku, name, price_cents, currency, available
FROM products
WHERE sku = ANY($1)
ORDER BY sku
FOR UPDATE`
	bySKU := make(map[string]Product, len(skus))
	b.Queue(lock, skus).Query(func(rows pgx.Rows) error {
		locked, err := pgx.CollectRows(rows, scanProduct)
		if err != nil {
			return fmt.Errorf("lock products: %w", err)
		}
		for _, p := range locked {
			bySKU[p.SKU] = p
		}
		return nil
	})
	return bySKU
}

// takeStock subtracts r's items from the locked products' stock and stores
// them with r. Both writes go out as one batch: the product rows locked
// before are held one round trip less.
func takeStock(ctx context.Context, tx pgx.Tx, r Reservation) error {
	skus := make([]string, len(r.Items))
	qtys := make([]int32, len(r.Items))
	prices := make([]int64, len(r.Items))
	for i, it := range r.Items {
		skus[i], qtys[i], prices[i] = it.SKU, int32(it.Quantity), it.UnitPriceCents
	}
	const take = `
UPDATE products p SET available = p.available - x.qty, updated_at = now()
FROM unnest($1::text[], $2::int[]) AS x(sku, qty)
WHERE p.sku = x.sku`
	const addItems = `
INSERT INTO reservation_items (order_id, sku, quantity, unit_price_cents)
SELECT $1, x.sku, x.qty, x.price
FROM unnest($2::text[], $3::int[], $4::bigint[]) AS x(sku, qty, price)`
	var b pgx.Batch
	b.Queue(take, skus, qtys)
	b.Queue(addItems, r.OrderID, skus, qtys, prices)
	if err := tx.SendBatch(ctx, &b).Close(); err != nil {
		return fmt.Errorf("take stock and insert reservation items: %w", err)
	}
	return nil
}

// Reservation returns the reservation of an order.
func (s *Store) Reservation(ctx context.Context, orderID uuid.UUID) (Reservation, error) {
	return loadReservation(ctx, s.pool, orderID)
}

// Commit marks a reserved reservation committed: its stock stays taken for
// good. Committing twice is harmless; a released or expired reservation
// yields ErrReservationNotActive.
//
// The commit is one conditional UPDATE: it takes the row lock, so a release
// or the sweeper running at the same moment either goes first (and the
// UPDATE then matches nothing) or waits for it. Only when it matched
// nothing does a second read tell a missing reservation from an inactive one.
func (s *Store) Commit(ctx context.Context, orderID uuid.UUID) (Reservation, error) {
	// The items come back with the row, so a commit is one statement.
	const q = `UPDATE reservations SET status = 'committed',
			updated_at = CASE WHEN status = 'committed' THEN updated_at ELSE now() END
		WHERE order_id = $1 AND status IN ('reserved', 'committed')
		RETURNING expires_at,
			ARRAY(SELECT sku FROM reservation_items i WHERE i.order_id = $1 ORDER BY sku),
			ARRAY(SELECT quantity FROM reservation_items i WHERE i.order_id = $1 ORDER BY sku),
			ARRAY(SELECT unit_price_cents FROM reservation_items i WHERE i.order_id = $1 ORDER BY sku)`
	var expiresAt time.Time
	var skus []string
	var qtys []int32
	var prices []int64
	err := s.pool.QueryRow(ctx, q, orderID).Scan(&expiresAt, &skus, &qtys, &prices)
	if errors.Is(err, pgx.ErrNoRows) {
		r, err := loadReservation(ctx, s.pool, orderID)
		if err != nil {
			return Reservation{}, fmt.Errorf("commit: %w", err)
		}
		return Reservation{}, fmt.Errorf("commit: reservation is %s: %w", r.Status, ErrReservationNotActive)
	}
	if err != nil {
		return Reservation{}, fmt.Errorf("commit reservation: %w", err)
	}
	if len(qtys) != len(skus) || len(prices) != len(skus) {
		return Reservation{}, fmt.Errorf("commit: reservation %s: %d skus, %d quantities, %d prices", orderID, len(skus), len(qtys), len(prices))
	}
	items := make([]ReservedItem, len(skus))
	for i := range skus {
		items[i] = ReservedItem{SKU: skus[i], Quantity: int(qtys[i]), UnitPriceCents: prices[i]}
	}
	return Reservation{OrderID: orderID, Status: StatusCommitted, ExpiresAt: expiresAt.UTC(), Items: items}, nil
}

// Release returns a reserved or committed reservation's stock and marks it
// released. A released or expired one is returned unchanged. An unknown order
// gets a released tombstone without items, so a reserve that arrives late
// (after the order gave up on it) cannot take stock nobody will release.
func (s *Store) Release(ctx context.Context, orderID uuid.UUID) (Reservation, error) {
	var r Reservation
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// A concurrent reserve for the same order holds the key until it
		// ends; DO NOTHING waits for it, so the tombstone never hides stock.
		const tomb = `
INSERT INTO reservations (order_id, status, expires_at)
VALUES ($1, 'released', now())
ON CONFLICT (order_id) DO NOTHING`
		tag, err := tx.Exec(ctx, tomb, orderID)
		if err != nil {
			return fmt.Errorf("insert tombstone: %w", err)
		}
		if tag.RowsAffected() == 0 {
			status, err := lockReservation(ctx, tx, orderID)
			if err != nil {
				return err
			}
			if status == StatusReserved || status == StatusCommitted {
				const q = `UPDATE reservations SET status = 'released', updated_at = now() WHERE order_id = $1`
				if _, err := tx.Exec(ctx, q, orderID); err != nil {
					return fmt.Errorf("release reservation: %w", err)
				}
				if _, err := returnStock(ctx, tx, []uuid.UUID{orderID}); err != nil {
					return err
				}
			}
		}
		r, err = loadReservation(ctx, tx, orderID)
		return err
	})
	if err != nil {
		return Reservation{}, fmt.Errorf("release: %w", err)
	}
	return r, nil
}

// ExpireReservations marks up to limit reserved reservations past their
// expiry as expired and returns their stock, in one transaction. SKIP LOCKED
// lets several replicas sweep at once without waiting on each other or on a
// commit/release in flight. It returns how many reservations expired and the
// skus whose stock changed (for cache invalidation).
func (s *Store) ExpireReservations(ctx context.Context, limit int) (n int, skus []string, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		const pick = `
SELECT order_id FROM reservations
WHERE status = 'reserved' AND expires_at < now()
ORDER BY expires_at
LIMIT $1
FOR UPDATE SKIP LOCKED`
		rows, err := tx.Query(ctx, pick, limit)
		if err != nil {
			return fmt.Errorf("pick expired: %w", err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		if err != nil {
			return fmt.Errorf("pick expired: %w", err)
		}
		if len(ids) == 0 {
			return nil
		}
		const mark = `UPDATE reservations SET status = 'expired', updated_at = now() WHERE order_id = ANY($1)`
		if _, err := tx.Exec(ctx, mark, ids); err != nil {
			return fmt.Errorf("mark expired: %w", err)
		}
		n = len(ids)
		skus, err = returnStock(ctx, tx, ids)
		return err
	})
	if err != nil {
		return 0, nil, fmt.Errorf("expire reservations: %w", err)
	}
	return n, skus, nil
}

// returnStock adds the quantities of the given reservations back to stock,
// locking the products in sku order like Reserve does, and returns the skus
// it changed.
func returnStock(ctx context.Context, tx pgx.Tx, orderIDs []uuid.UUID) ([]string, error) {
	const sum = `
SELECT sku, sum(quantity)::int
FROM reservation_items
WHERE order_id = ANY($1)
GROUP BY sku
ORDER BY sku`
	rows, err := tx.Query(ctx, sum, orderIDs)
	if err != nil {
		return nil, fmt.Errorf("sum reserved items: %w", err)
	}
	var skus []string
	var qtys []int32
	var sku string
	var qty int32
	_, err = pgx.ForEachRow(rows, []any{&sku, &qty}, func() error {
		skus = append(skus, sku)
		qtys = append(qtys, qty)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sum reserved items: %w", err)
	}
	if len(skus) == 0 {
		return nil, nil
	}
	const lock = `SELECT sku FROM products WHERE sku = ANY($1) ORDER BY sku FOR UPDATE`
	if _, err := tx.Exec(ctx, lock, skus); err != nil {
		return nil, fmt.Errorf("lock products: %w", err)
	}
	const give = `
UPDATE products p SET available = p.available + x.qty, updated_at = now()
FROM unnest($1::text[], $2::int[]) AS x(sku, qty)
WHERE p.sku = x.sku`
	if _, err := tx.Exec(ctx, give, skus, qtys); err != nil {
		return nil, fmt.Errorf("return stock: %w", err)
	}
	return skus, nil
}

// lockReservation locks an order's reservation row and returns its status.
func lockReservation(ctx context.Context, tx pgx.Tx, orderID uuid.UUID) (string, error) {
	const q = `SELECT status FROM reservations WHERE order_id = $1 FOR UPDATE`
	var status string
	err := tx.QueryRow(ctx, q, orderID).Scan(&status)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("lock reservation: %w", err)
	}
	return status, nil
}

// loadReservation reads a reservation with its items (two indexed lookups).
func loadReservation(ctx context.Context, q querier, orderID uuid.UUID) (Reservation, error) {
	const head = `SELECT status, expires_at FROM reservations WHERE order_id = $1`
	r := Reservation{OrderID: orderID, Items: []ReservedItem{}}
	err := q.QueryRow(ctx, head, orderID).Scan(&r.Status, &r.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Reservation{}, ErrNotFound
	}
	if err != nil {
		return Reservation{}, fmt.Errorf("select reservation: %w", err)
	}
	r.ExpiresAt = r.ExpiresAt.UTC()
	items, err := loadItems(ctx, q, orderID)
	if err != nil {
		return Reservation{}, err
	}
	r.Items = items
	return r, nil
}

// loadItems reads a reservation's items in sku order; never nil.
func loadItems(ctx context.Context, q querier, orderID uuid.UUID) ([]ReservedItem, error) {
	const lines = `
SELECT sku, quantity, unit_price_cents
FROM reservation_items
WHERE order_id = $1
ORDER BY sku`
	rows, err := q.Query(ctx, lines, orderID)
	if err != nil {
		return nil, fmt.Errorf("select reservation items: %w", err)
	}
	items, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ReservedItem, error) {
		var it ReservedItem
		err := row.Scan(&it.SKU, &it.Quantity, &it.UnitPriceCents)
		return it, err
	})
	if err != nil {
		return nil, fmt.Errorf("select reservation items: %w", err)
	}
	if items == nil {
		items = []ReservedItem{}
	}
	return items, nil
}

// ReservationRetention is how long a released or expired reservation is
// kept after it ended: long after any late reserve or release of its order.
const ReservationRetention = 30 * 24 * time.Hour

// PurgeReservations deletes at most limit released or expired reservations
// (their items go with them) that ended before before, oldest first.
// Committed reservations are sales and are kept. A release that arrives
// after the purge finds no reservation and leaves a tombstone, as for any
// unknown order.
func (s *Store) PurgeReservations(ctx context.Context, before time.Time, limit int) (int64, error) {
	const q = `
DELETE FROM reservations WHERE order_id IN (
    SELECT order_id FROM reservations
    WHERE status IN ('released', 'expired') AND updated_at < $1
    ORDER BY updated_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED)`
	tag, err := s.pool.Exec(ctx, q, before, limit)
	if err != nil {
		return 0, fmt.Errorf("purge reservations: %w", err)
	}
	return tag.RowsAffected(), nil
}

// scanProduct reads a row of sku, name, price_cents, currency, available:
// the columns of every product query, in that order.
func scanProduct(row pgx.CollectableRow) (Product, error) {
	var p Product
	err := row.Scan(&p.SKU, &p.Name, &p.PriceCents, &p.Currency, &p.Available)
	return p, err
}
