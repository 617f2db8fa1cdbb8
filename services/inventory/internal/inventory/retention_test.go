package inventory

import (
	"context"
	"testing"
	"time"

	"github.com/orderflow/orderflow/pkg/retention"
)

// TestStore_PurgeReservations: released and expired reservations that ended
// more than 30 days ago go with their items; a committed one (a sale), a
// held one and a recently released one stay.
func TestStore_PurgeReservations(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	ctx := context.Background()
	store := NewStore(pool)
	if _, err := store.Seed(ctx, 3); err != nil {
		t.Fatal(err)
	}
	const seed = `
INSERT INTO reservations (order_id, status, expires_at, created_at, updated_at) VALUES
    ('00000000-0000-7000-8000-000000000001', 'released', now(), now() - interval '40 days', now() - interval '31 days'),
    ('00000000-0000-7000-8000-000000000002', 'expired', now(), now() - interval '40 days', now() - interval '31 days'),
    ('00000000-0000-7000-8000-000000000003', 'committed', now(), now() - interval '40 days', now() - interval '31 days'),
    ('00000000-0000-7000-8000-000000000004', 'reserved', now() - interval '31 days', now() - interval '40 days', now() - interval '31 days'),
    ('00000000-0000-7000-8000-000000000005', 'released', now(), now() - interval '40 days', now() - interval '29 days');
INSERT INTO reservation_items (order_id, sku, quantity, unit_price_cents)
SELECT order_id, 'SKU-00001', 1, 100 FROM reservations`
	if _, err := pool.Exec(ctx, seed); err != nil {
		t.Fatal(err)
	}
	deleted, err := retention.Purge(ctx, time.Now(),
		retention.Job{Name: "reservations", Keep: ReservationRetention, Delete: store.PurgeReservations})
	if err != nil || deleted["reservations"] != 2 {
		t.Fatalf("Purge = %v, %v; want 2 reservations deleted", deleted, err)
	}
	var left, items int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM reservations), (SELECT count(*) FROM reservation_items)`).Scan(&left, &items); err != nil {
		t.Fatal(err)
	}
	if left != 3 || items != 3 {
		t.Errorf("left %d reservations with %d items; want 3 and 3 (committed, held, recently released)", left, items)
	}
}
