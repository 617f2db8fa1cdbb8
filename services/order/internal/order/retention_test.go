package order

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/orderflow/orderflow/pkg/retention"
)

// TestStore_PurgeKeys: answered keys older than the cut-off go, in batches;
// a recent key and a key whose request still runs stay, however old.
func TestStore_PurgeKeys(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	ctx := context.Background()
	const seed = `
INSERT INTO idempotency_keys (key, request_hash, order_id, status_code, response, created_at)
SELECT 'old-' || i, '\x00', gen_random_uuid(), 201, '{}', now() - interval '25 hours'
FROM generate_series(1, 2500) AS i;
INSERT INTO idempotency_keys (key, request_hash, order_id, status_code, response, created_at) VALUES
    ('recent', '\x00', gen_random_uuid(), 201, '{}', now() - interval '23 hours'),
    ('running', '\x00', gen_random_uuid(), NULL, NULL, now() - interval '30 hours')`
	if _, err := h.pool.Exec(ctx, seed); err != nil {
		t.Fatal(err)
	}
	store := NewStore(h.pool)
	deleted, err := retention.Purge(ctx, time.Now(),
		retention.Job{Name: "keys", Keep: KeyRetention, Delete: store.PurgeKeys})
	if err != nil {
		t.Fatal(err)
	}
	if deleted["keys"] != 2500 {
		t.Errorf("deleted %d keys; want the 2500 answered ones older than 24h", deleted["keys"])
	}
	left := h.column(t, `SELECT key FROM idempotency_keys ORDER BY key`)
	if diff := cmp.Diff([]string{"recent", "running"}, left); diff != "" {
		t.Errorf("keys left (-want +got):\n%s", diff)
	}
}
