package outbox_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/pkg/dbtest"
	"github.com/orderflow/orderflow/pkg/events"
	"github.com/orderflow/orderflow/pkg/queue"
	"github.com/orderflow/orderflow/pkg/queue/queuetest"
	"github.com/orderflow/orderflow/pkg/tcpproxy"
	"github.com/orderflow/orderflow/services/order/internal/outbox"
)

func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	fsys, err := migrations.For("order")
	if err != nil {
		t.Fatal(err)
	}
	return dbtest.NewPool(t, fsys)
}

func event(t *testing.T) events.Order {
	t.Helper()
	id, _ := uuid.NewV7()
	orderID, _ := uuid.NewV7()
	return events.Order{
		ID: id.String(), Type: events.OrderConfirmed, OrderID: orderID.String(), CustomerID: "cus_1",
		Status: "confirmed", Items: []events.Item{{SKU: "SKU-00001", Quantity: 1, UnitPriceCents: 100}},
		TotalCents: 100, Currency: "USD", OccurredAt: time.Now().UTC(),
	}
}

func add(t *testing.T, pool *pgxpool.Pool, e events.Order) {
	t.Helper()
	err := pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
		return queueIn(context.Background(), tx, e)
	})
	if err != nil {
		t.Fatalf("add: %v", err)
	}
}

// queueIn writes e inside tx, as the order store does with its status change.
func queueIn(ctx context.Context, tx pgx.Tx, e events.Order) error {
	var b pgx.Batch
	if err := outbox.Queue(ctx, &b, e); err != nil {
		return err
	}
	return tx.SendBatch(ctx, &b).Close()
}

func eventIDs(t *testing.T, bodies []string) []string {
	t.Helper()
	var ids []string
	for _, b := range bodies {
		e, err := events.Decode([]byte(b))
		if err != nil {
			t.Fatalf("a published body does not decode: %v", err)
		}
		ids = append(ids, e.ID)
	}
	sort.Strings(ids)
	return ids
}

func unsent(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox WHERE sent_at IS NULL`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestQueue_RolledBackTransactionLeavesNoEvent(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	errBoom := errors.New("status update failed")
	err := pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
		if err := queueIn(context.Background(), tx, event(t)); err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("BeginFunc = %v; want %v", err, errBoom)
	}
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("outbox rows after rollback = %d; want 0", n)
	}
}

func TestRelay_PublishesToEveryQueue(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	client := queuetest.Client(t)
	names := []string{queuetest.Name("invoices"), queuetest.Name("emails")}
	relay := outbox.NewRelay(pool, client, names, slog.New(slog.NewTextHandler(io.Discard, nil)))

	var want []string
	for range 25 {
		e := event(t)
		add(t, pool, e)
		want = append(want, e.ID)
	}
	sort.Strings(want)
	for {
		n, err := relay.PublishBatch(context.Background())
		if err != nil {
			t.Fatalf("PublishBatch: %v", err)
		}
		if n == 0 {
			break
		}
	}
	if got := unsent(t, pool); got != 0 {
		t.Errorf("unsent rows = %d; want 0", got)
	}
	for _, name := range names {
		q, err := queue.Ensure(context.Background(), client, name, queue.Options{})
		if err != nil {
			t.Fatal(err)
		}
		got := eventIDs(t, queuetest.Drain(t, client, q.URL, len(want), 15*time.Second))
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("events on %s (-want +got):\n%s", name, diff)
		}
	}
}

// TestRelay_SQSOutage cuts the SQS endpoint for 20 s while events keep being
// written: none is lost, and all are published once it returns.
func TestRelay_SQSOutage(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	cfg := queuetest.Config(t)
	target := strings.TrimPrefix(cfg.Endpoint, "http://")
	proxy, err := tcpproxy.Start(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	cfg.Endpoint = "http://" + proxy.Addr()
	client, err := queue.NewClient(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	name := queuetest.Name("outage")
	relay := outbox.NewRelay(pool, client, []string{name}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { relay.Run(ctx, 50*time.Millisecond); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	var want []string
	write := func(n int) {
		for range n {
			e := event(t)
			add(t, pool, e)
			want = append(want, e.ID)
		}
	}
	write(5)
	proxy.Cut()
	for range 20 { // 20 s of outage, events keep coming
		write(2)
		time.Sleep(time.Second)
	}
	if got := unsent(t, pool); got < 40 {
		t.Errorf("unsent rows during the outage = %d; want at least 40", got)
	}
	if err := proxy.Restore(); err != nil {
		t.Fatal(err)
	}
	direct := queuetest.Client(t)
	q, err := queue.Ensure(context.Background(), direct, name, queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(want)
	got := eventIDs(t, queuetest.Drain(t, direct, q.URL, len(want), 30*time.Second))
	// Delivery is at-least-once: a batch in flight when the cut came may be
	// published twice. Every event must be there; duplicates are allowed.
	got = dedupe(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events after the outage (-want +got):\n%s", diff)
	}
	// The relay marks a batch sent after SQS accepted it, so a consumer can
	// see the last batch a moment before its rows are marked.
	deadline := time.Now().Add(10 * time.Second)
	for unsent(t, pool) != 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := unsent(t, pool); n != 0 {
		t.Errorf("unsent rows after the outage = %d; want 0", n)
	}
}

func dedupe(sorted []string) []string {
	var out []string
	for i, s := range sorted {
		if i == 0 || s != sorted[i-1] {
			out = append(out, s)
		}
	}
	return out
}
