package notification_test

import (
	"context"
	"testing"
	"time"

	"github.com/orderflow/orderflow/pkg/retention"
	"github.com/orderflow/orderflow/services/notification/internal/notification"
)

// TestStore_PurgeProcessed: processed-event ids older than 14 days go; a
// recent one stays, so its redelivery is still recognised.
func TestStore_PurgeProcessed(t *testing.T) {
	t.Parallel()
	_, pool := newService(t, "127.0.0.1:1")
	ctx := context.Background()
	const seed = `
INSERT INTO processed_events (consumer, event_id, processed_at)
SELECT 'invoice', gen_random_uuid(), now() - interval '15 days' FROM generate_series(1, 1500);
INSERT INTO processed_events (consumer, event_id, processed_at) VALUES ('email', gen_random_uuid(), now() - interval '13 days')`
	if _, err := pool.Exec(ctx, seed); err != nil {
		t.Fatal(err)
	}
	store := notification.NewStore(pool)
	deleted, err := retention.Purge(ctx, time.Now(), retention.Job{Name: "processed_events",
		Keep: notification.ProcessedRetention, Delete: store.PurgeProcessed})
	if err != nil || deleted["processed_events"] != 1500 {
		t.Fatalf("Purge = %v, %v; want 1500 deleted", deleted, err)
	}
	var left int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM processed_events`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 1 {
		t.Errorf("%d processed events left; want 1 (the recent one)", left)
	}
}
