package inventory

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/pkg/dbtest"
)

const testTTL = 15 * time.Minute

func newTestPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	fsys, err := migrations.For("inventory")
	if err != nil {
		t.Fatalf("migrations.For: %v", err)
	}
	return dbtest.NewPool(t, fsys)
}

// addProducts inserts products sku→available, each priced at 100 cents per
// position (first 100, second 200, …) so prices are easy to check.
func addProducts(t *testing.T, pool *pgxpool.Pool, stock map[string]int) {
	t.Helper()
	for sku, n := range stock {
		_, err := pool.Exec(context.Background(),
			`INSERT INTO products (sku, name, price_cents, available) VALUES ($1, $2, $3, $4)`,
			sku, "Name "+sku, priceOf(sku), n)
		if err != nil {
			t.Fatalf("insert product %s: %v", sku, err)
		}
	}
}

func priceOf(sku string) int64 {
	var sum int64
	for _, c := range sku {
		sum += int64(c)
	}
	return sum * 10
}

func available(t *testing.T, pool *pgxpool.Pool, sku string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT available FROM products WHERE sku = $1`, sku).Scan(&n); err != nil {
		t.Fatalf("available(%s): %v", sku, err)
	}
	return n
}

func stockOf(t *testing.T, pool *pgxpool.Pool, skus ...string) map[string]int {
	t.Helper()
	m := map[string]int{}
	for _, s := range skus {
		m[s] = available(t, pool, s)
	}
	return m
}

func countReservations(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM reservations`).Scan(&n); err != nil {
		t.Fatalf("count reservations: %v", err)
	}
	return n
}

func TestStore_Reserve(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		items     []Item
		wantCode  string
		wantSKUs  []string
		wantStock map[string]int
	}{
		{
			name:      "all available",
			items:     []Item{{SKU: "B", Quantity: 2}, {SKU: "A", Quantity: 5}},
			wantStock: map[string]int{"A": 0, "B": 8, "C": 1},
		},
		{
			name:      "one short sku reserves nothing",
			items:     []Item{{SKU: "A", Quantity: 1}, {SKU: "C", Quantity: 2}},
			wantCode:  CodeOutOfStock,
			wantSKUs:  []string{"C"},
			wantStock: map[string]int{"A": 5, "B": 10, "C": 1},
		},
		{
			name:      "every short sku is listed",
			items:     []Item{{SKU: "C", Quantity: 2}, {SKU: "B", Quantity: 3}, {SKU: "A", Quantity: 6}},
			wantCode:  CodeOutOfStock,
			wantSKUs:  []string{"A", "C"},
			wantStock: map[string]int{"A": 5, "B": 10, "C": 1},
		},
		{
			name:      "unknown skus reserve nothing",
			items:     []Item{{SKU: "A", Quantity: 1}, {SKU: "Z", Quantity: 1}, {SKU: "Y", Quantity: 1}},
			wantCode:  CodeUnknownSKU,
			wantSKUs:  []string{"Y", "Z"},
			wantStock: map[string]int{"A": 5, "B": 10, "C": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool := newTestPool(t)
			addProducts(t, pool, map[string]int{"A": 5, "B": 10, "C": 1})
			store := NewStore(pool)
			id := uuid.Must(uuid.NewV7())
			before := time.Now()
			r, created, err := store.Reserve(context.Background(), id, tt.items, testTTL)
			if tt.wantCode != "" {
				var se *StockError
				if !errors.As(err, &se) {
					t.Fatalf("Reserve = %v; want a StockError", err)
				}
				if diff := cmp.Diff(&StockError{Code: tt.wantCode, SKUs: tt.wantSKUs}, se); diff != "" {
					t.Errorf("StockError (-want +got):\n%s", diff)
				}
				if n := countReservations(t, pool); n != 0 {
					t.Errorf("reservations left behind = %d; want 0", n)
				}
			} else {
				if err != nil || !created {
					t.Fatalf("Reserve = %v, created %v; want nil, true", err, created)
				}
				want := Reservation{OrderID: id, Status: StatusReserved, Items: []ReservedItem{
					{SKU: "A", Quantity: 5, UnitPriceCents: priceOf("A")},
					{SKU: "B", Quantity: 2, UnitPriceCents: priceOf("B")},
				}}
				if diff := cmp.Diff(want, r, cmpIgnoreExpiry); diff != "" {
					t.Errorf("Reserve (-want +got):\n%s", diff)
				}
				if r.ExpiresAt.Before(before.Add(testTTL-time.Minute)) || r.ExpiresAt.After(time.Now().Add(testTTL+time.Minute)) {
					t.Errorf("ExpiresAt = %v; want about now + %v", r.ExpiresAt, testTTL)
				}
				got, err := store.Reservation(context.Background(), id)
				if err != nil {
					t.Fatalf("Reservation: %v", err)
				}
				if diff := cmp.Diff(r, got, cmpTime); diff != "" {
					t.Errorf("stored reservation (-reserve +stored):\n%s", diff)
				}
			}
			if diff := cmp.Diff(tt.wantStock, stockOf(t, pool, "A", "B", "C")); diff != "" {
				t.Errorf("stock (-want +got):\n%s", diff)
			}
		})
	}
}

var (
	cmpIgnoreExpiry = cmp.Comparer(func(a, b time.Time) bool { return true })
	cmpTime         = cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })
)

func TestStore_ReserveIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newTestPool(t)
	addProducts(t, pool, map[string]int{"A": 10, "B": 10})
	store := NewStore(pool)
	id := uuid.Must(uuid.NewV7())

	first, created, err := store.Reserve(ctx, id, []Item{{SKU: "A", Quantity: 3}}, testTTL)
	if err != nil || !created {
		t.Fatalf("Reserve = %v, created %v; want nil, true", err, created)
	}
	// Same order again, even with other items: the first reservation, unchanged.
	again, created, err := store.Reserve(ctx, id, []Item{{SKU: "B", Quantity: 4}}, testTTL)
	if err != nil || created {
		t.Fatalf("second Reserve = %v, created %v; want nil, false", err, created)
	}
	if diff := cmp.Diff(first, again, cmpTime); diff != "" {
		t.Errorf("second Reserve (-first +second):\n%s", diff)
	}
	if got := stockOf(t, pool, "A", "B"); got["A"] != 7 || got["B"] != 10 {
		t.Errorf("stock = %v; want A:7 B:10", got)
	}

	// After a commit, a repeat returns the committed reservation.
	if _, err := store.Commit(ctx, id); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	again, created, err = store.Reserve(ctx, id, []Item{{SKU: "A", Quantity: 3}}, testTTL)
	if err != nil || created || again.Status != StatusCommitted {
		t.Fatalf("Reserve after commit = %+v, created %v, %v; want committed, false, nil", again, created, err)
	}
	if got := available(t, pool, "A"); got != 7 {
		t.Errorf("available(A) = %d; want 7", got)
	}
}

func TestStore_Commit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newTestPool(t)
	addProducts(t, pool, map[string]int{"A": 10})
	store := NewStore(pool)

	if _, err := store.Commit(ctx, uuid.Must(uuid.NewV7())); !errors.Is(err, ErrNotFound) {
		t.Errorf("Commit(unknown) = %v; want ErrNotFound", err)
	}

	id := uuid.Must(uuid.NewV7())
	if _, _, err := store.Reserve(ctx, id, []Item{{SKU: "A", Quantity: 4}}, testTTL); err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	for i := range 2 {
		r, err := store.Commit(ctx, id)
		if err != nil || r.Status != StatusCommitted || len(r.Items) != 1 {
			t.Fatalf("Commit #%d = %+v, %v; want committed with 1 item", i+1, r, err)
		}
	}
	if got := available(t, pool, "A"); got != 6 {
		t.Errorf("available(A) after commits = %d; want 6", got)
	}

	released := uuid.Must(uuid.NewV7())
	if _, _, err := store.Reserve(ctx, released, []Item{{SKU: "A", Quantity: 1}}, testTTL); err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	if _, err := store.Release(ctx, released); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if _, err := store.Commit(ctx, released); !errors.Is(err, ErrReservationNotActive) {
		t.Errorf("Commit(released) = %v; want ErrReservationNotActive", err)
	}
}

func TestStore_Release(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newTestPool(t)
	addProducts(t, pool, map[string]int{"A": 10, "B": 10})
	store := NewStore(pool)

	t.Run("reserved returns stock once", func(t *testing.T) {
		id := uuid.Must(uuid.NewV7())
		if _, _, err := store.Reserve(ctx, id, []Item{{SKU: "A", Quantity: 3}, {SKU: "B", Quantity: 2}}, testTTL); err != nil {
			t.Fatalf("Reserve: %v", err)
		}
		for i := range 2 {
			r, err := store.Release(ctx, id)
			if err != nil || r.Status != StatusReleased || len(r.Items) != 2 {
				t.Fatalf("Release #%d = %+v, %v; want released with 2 items", i+1, r, err)
			}
			if got := stockOf(t, pool, "A", "B"); got["A"] != 10 || got["B"] != 10 {
				t.Errorf("stock after release #%d = %v; want A:10 B:10", i+1, got)
			}
		}
	})

	t.Run("committed returns stock", func(t *testing.T) {
		id := uuid.Must(uuid.NewV7())
		if _, _, err := store.Reserve(ctx, id, []Item{{SKU: "A", Quantity: 4}}, testTTL); err != nil {
			t.Fatalf("Reserve: %v", err)
		}
		if _, err := store.Commit(ctx, id); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		if got := available(t, pool, "A"); got != 6 {
			t.Fatalf("available(A) after commit = %d; want 6", got)
		}
		r, err := store.Release(ctx, id)
		if err != nil || r.Status != StatusReleased {
			t.Fatalf("Release = %+v, %v; want released", r, err)
		}
		if got := available(t, pool, "A"); got != 10 {
			t.Errorf("available(A) after release = %d; want 10", got)
		}
	})

	t.Run("unknown order leaves a tombstone", func(t *testing.T) {
		id := uuid.Must(uuid.NewV7())
		r, err := store.Release(ctx, id)
		want := Reservation{OrderID: id, Status: StatusReleased, Items: []ReservedItem{}}
		if err != nil {
			t.Fatalf("Release(unknown) = %v", err)
		}
		if diff := cmp.Diff(want, r, cmpIgnoreExpiry); diff != "" {
			t.Errorf("Release(unknown) (-want +got):\n%s", diff)
		}
		late, created, err := store.Reserve(ctx, id, []Item{{SKU: "A", Quantity: 5}}, testTTL)
		if err != nil || created {
			t.Fatalf("late Reserve = %v, created %v; want nil, false", err, created)
		}
		if diff := cmp.Diff(want, late, cmpIgnoreExpiry); diff != "" {
			t.Errorf("late Reserve (-want +got):\n%s", diff)
		}
		if got := available(t, pool, "A"); got != 10 {
			t.Errorf("available(A) = %d; want 10 (a tombstone takes no stock)", got)
		}
	})
}

func TestStore_ExpireReservations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newTestPool(t)
	addProducts(t, pool, map[string]int{"A": 10, "B": 10})
	store := NewStore(pool)
	svc := NewService(store, nil, time.Microsecond)

	expiring := uuid.Must(uuid.NewV7())
	if _, _, err := svc.Reserve(ctx, expiring, []Item{{SKU: "A", Quantity: 3}, {SKU: "B", Quantity: 1}}); err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	committed := uuid.Must(uuid.NewV7())
	if _, _, err := svc.Reserve(ctx, committed, []Item{{SKU: "A", Quantity: 2}}); err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	if _, err := svc.Commit(ctx, committed); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	fresh := uuid.Must(uuid.NewV7())
	if _, _, err := store.Reserve(ctx, fresh, []Item{{SKU: "B", Quantity: 5}}, time.Hour); err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	// Make expiry certain without sleeping.
	if _, err := pool.Exec(ctx, `UPDATE reservations SET expires_at = now() - interval '1 second' WHERE order_id = ANY($1)`,
		[]uuid.UUID{expiring, committed}); err != nil {
		t.Fatalf("backdate: %v", err)
	}

	n, err := svc.Sweep(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1, nil", n, err)
	}
	if diff := cmp.Diff(map[string]int{"A": 8, "B": 5}, stockOf(t, pool, "A", "B")); diff != "" {
		t.Errorf("stock after sweep (-want +got):\n%s", diff)
	}
	wantStatus := map[uuid.UUID]string{expiring: StatusExpired, committed: StatusCommitted, fresh: StatusReserved}
	for id, want := range wantStatus {
		r, err := store.Reservation(ctx, id)
		if err != nil || r.Status != want {
			t.Errorf("Reservation(%s) = %q, %v; want %q", id, r.Status, err, want)
		}
	}
	if n, err := svc.Sweep(ctx); err != nil || n != 0 {
		t.Errorf("second Sweep = %d, %v; want 0, nil", n, err)
	}
	if _, err := store.Commit(ctx, expiring); !errors.Is(err, ErrReservationNotActive) {
		t.Errorf("Commit(expired) = %v; want ErrReservationNotActive", err)
	}
	if r, err := store.Release(ctx, expiring); err != nil || r.Status != StatusExpired {
		t.Errorf("Release(expired) = %q, %v; want expired unchanged", r.Status, err)
	}
	if diff := cmp.Diff(map[string]int{"A": 8, "B": 5}, stockOf(t, pool, "A", "B")); diff != "" {
		t.Errorf("stock after release of expired (-want +got):\n%s", diff)
	}
}

func TestService_RunSweeper(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	addProducts(t, pool, map[string]int{"A": 10})
	svc := NewService(NewStore(pool), nil, time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	id := uuid.Must(uuid.NewV7())
	if _, _, err := svc.Reserve(ctx, id, []Item{{SKU: "A", Quantity: 10}}); err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		svc.RunSweeper(ctx, 10*time.Millisecond, discardLogger())
	}()
	for available(t, pool, "A") != 10 {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	r, err := svc.Reservation(context.Background(), id)
	if err != nil || r.Status != StatusExpired {
		t.Errorf("Reservation = %q, %v; want expired", r.Status, err)
	}
}

func TestStore_Seed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newTestPool(t)
	store := NewStore(pool)

	if n, err := store.Seed(ctx, 50); err != nil || n != 50 {
		t.Fatalf("Seed(50) = %d, %v; want 50, nil", n, err)
	}
	if _, err := store.SetStock(ctx, "SKU-00007", 3); err != nil {
		t.Fatalf("SetStock: %v", err)
	}
	if n, err := store.Seed(ctx, 60); err != nil || n != 10 {
		t.Fatalf("Seed(60) = %d, %v; want 10, nil", n, err)
	}
	ps, err := store.Products(ctx, "", 100)
	if err != nil {
		t.Fatalf("Products: %v", err)
	}
	if len(ps) != 60 {
		t.Fatalf("len(Products) = %d; want 60", len(ps))
	}
	for i, p := range ps {
		wantSKU := fmt.Sprintf("SKU-%05d", i+1)
		if p.SKU != wantSKU || p.Currency != "USD" || p.PriceCents < 100 || p.PriceCents > 99999 || p.Name == "" {
			t.Errorf("product %d = %+v; want sku %s, USD, price in 100..99999", i, p, wantSKU)
		}
		wantAvail := 1_000_000
		if p.SKU == "SKU-00007" {
			wantAvail = 3
		}
		if p.Available != wantAvail {
			t.Errorf("%s available = %d; want %d", p.SKU, p.Available, wantAvail)
		}
	}
}

// TestStore_ReserveConcurrent races 40 orders for 10 units: exactly 10 win.
func TestStore_ReserveConcurrent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newTestPool(t)
	addProducts(t, pool, map[string]int{"HOT": 10})
	store := NewStore(pool)

	const workers = 40
	var wg sync.WaitGroup
	results := make([]error, workers)
	start := make(chan struct{})
	for i := range workers {
		wg.Go(func() {
			<-start
			_, _, results[i] = store.Reserve(ctx, uuid.Must(uuid.NewV7()), []Item{{SKU: "HOT", Quantity: 1}}, testTTL)
		})
	}
	close(start)
	wg.Wait()

	won := 0
	for i, err := range results {
		var se *StockError
		switch {
		case err == nil:
			won++
		case errors.As(err, &se) && se.Code == CodeOutOfStock:
		default:
			t.Errorf("worker %d: Reserve = %v; want nil or out_of_stock", i, err)
		}
	}
	if won != 10 {
		t.Errorf("successful reservations = %d; want 10", won)
	}
	if got := available(t, pool, "HOT"); got != 0 {
		t.Errorf("available = %d; want 0", got)
	}
	if n := countReservations(t, pool); n != 10 {
		t.Errorf("reservation rows = %d; want 10", n)
	}
}

// TestStore_NoDeadlock runs overlapping multi-sku reservations listed in
// different orders, with releases, commits and sweeps in between: with rows
// locked in sku order none of them may fail, and stock must add up.
func TestStore_NoDeadlock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newTestPool(t)
	skus := []string{"A", "B", "C", "D", "E", "F"}
	stock := map[string]int{}
	for _, s := range skus {
		stock[s] = 100_000
	}
	addProducts(t, pool, stock)
	store := NewStore(pool)

	const workers, rounds = 16, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds*3)
	var mu sync.Mutex
	held := map[string]int{} // stock held by reservations not released
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for range rounds {
				perm := rng.Perm(len(skus))
				n := 2 + rng.IntN(len(skus)-1)
				items := make([]Item, n)
				for i := range n {
					items[i] = Item{SKU: skus[perm[i]], Quantity: 1 + rng.IntN(5)}
				}
				id := uuid.Must(uuid.NewV7())
				ttl := testTTL
				if rng.IntN(4) == 0 {
					ttl = time.Microsecond // left for the sweeper
				}
				if _, _, err := store.Reserve(ctx, id, items, ttl); err != nil {
					errs <- fmt.Errorf("reserve: %w", err)
					continue
				}
				keep := true
				switch rng.IntN(3) {
				case 0:
					if _, err := store.Release(ctx, id); err != nil {
						errs <- fmt.Errorf("release: %w", err)
					}
					keep = false
				case 1:
					if _, err := store.Commit(ctx, id); err != nil && !errors.Is(err, ErrReservationNotActive) {
						errs <- fmt.Errorf("commit: %w", err)
					}
				}
				if _, _, err := store.ExpireReservations(ctx, SweepBatchSize); err != nil {
					errs <- fmt.Errorf("sweep: %w", err)
				}
				if keep {
					mu.Lock()
					for _, it := range items {
						held[it.SKU] += it.Quantity
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if _, _, err := store.ExpireReservations(ctx, SweepBatchSize); err != nil {
		t.Fatalf("final sweep: %v", err)
	}
	// Whatever is still reserved or committed must be exactly what is missing.
	rows, err := pool.Query(ctx, `
SELECT i.sku, sum(i.quantity)::int FROM reservation_items i
JOIN reservations r USING (order_id)
WHERE r.status IN ('reserved', 'committed') GROUP BY i.sku`)
	if err != nil {
		t.Fatalf("query held: %v", err)
	}
	dbHeld := map[string]int{}
	for rows.Next() {
		var s string
		var q int
		if err := rows.Scan(&s, &q); err != nil {
			t.Fatalf("scan: %v", err)
		}
		dbHeld[s] = q
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("rows: %v", err)
	}
	for _, s := range skus {
		if got, want := available(t, pool, s), 100_000-dbHeld[s]; got != want {
			t.Errorf("available(%s) = %d; want %d (100000 - %d held)", s, got, want, dbHeld[s])
		}
		if dbHeld[s] > held[s] {
			t.Errorf("held(%s) = %d; more than the %d reserved and never released", s, dbHeld[s], held[s])
		}
	}
}

// TestStore_ReserveSameOrderConcurrent sends one order's reserve many times
// at once (client retries): one reservation, stock taken once.
func TestStore_ReserveSameOrderConcurrent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newTestPool(t)
	addProducts(t, pool, map[string]int{"A": 100, "B": 100})
	store := NewStore(pool)
	id := uuid.Must(uuid.NewV7())
	items := []Item{{SKU: "A", Quantity: 3}, {SKU: "B", Quantity: 4}}

	const workers = 12
	var wg sync.WaitGroup
	created := make([]bool, workers)
	got := make([]Reservation, workers)
	errs := make([]error, workers)
	start := make(chan struct{})
	for i := range workers {
		wg.Go(func() {
			<-start
			got[i], created[i], errs[i] = store.Reserve(ctx, id, items, testTTL)
		})
	}
	close(start)
	wg.Wait()
	nCreated := 0
	for i := range workers {
		if errs[i] != nil {
			t.Fatalf("worker %d: Reserve = %v", i, errs[i])
		}
		if created[i] {
			nCreated++
		}
		if diff := cmp.Diff(got[0], got[i], cmpTime); diff != "" {
			t.Errorf("worker %d reservation differs (-0 +%d):\n%s", i, i, diff)
		}
	}
	if nCreated != 1 {
		t.Errorf("created = %d; want 1", nCreated)
	}
	if diff := cmp.Diff(map[string]int{"A": 97, "B": 96}, stockOf(t, pool, "A", "B")); diff != "" {
		t.Errorf("stock (-want +got):\n%s", diff)
	}
}

// TestStore_ReleaseRacesReserve releases orders while their reserve is in
// flight: whichever wins, no stock stays taken by a released order.
func TestStore_ReleaseRacesReserve(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newTestPool(t)
	addProducts(t, pool, map[string]int{"A": 1000})
	store := NewStore(pool)

	const orders = 20
	var wg sync.WaitGroup
	for range orders {
		id := uuid.Must(uuid.NewV7())
		wg.Go(func() {
			if _, _, err := store.Reserve(ctx, id, []Item{{SKU: "A", Quantity: 5}}, testTTL); err != nil {
				t.Errorf("Reserve: %v", err)
			}
		})
		wg.Go(func() {
			if _, err := store.Release(ctx, id); err != nil {
				t.Errorf("Release: %v", err)
			}
		})
	}
	wg.Wait()
	if got := available(t, pool, "A"); got != 1000 {
		t.Errorf("available = %d; want 1000 (every order released)", got)
	}
	var open int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM reservations WHERE status <> 'released'`).Scan(&open); err != nil {
		t.Fatalf("count: %v", err)
	}
	if open != 0 {
		t.Errorf("reservations not released = %d; want 0", open)
	}
}
