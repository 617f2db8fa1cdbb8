package outbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/orderflow/orderflow/services/order/internal/outbox"
)

// TestPurge: rows sent before the cut-off go; a recently sent row and an
// unsent row stay, however old.
func TestPurge(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	const seed = `
INSERT INTO outbox (event_id, event_type, order_id, payload, created_at, sent_at) VALUES
    (gen_random_uuid(), 'sent-old', gen_random_uuid(), '{}', now() - interval '3 days', now() - interval '2 days'),
    (gen_random_uuid(), 'sent-recent', gen_random_uuid(), '{}', now() - interval '3 days', now() - interval '1 hour'),
    (gen_random_uuid(), 'unsent-old', gen_random_uuid(), '{}', now() - interval '3 days', NULL)`
	if _, err := pool.Exec(ctx, seed); err != nil {
		t.Fatal(err)
	}
	n, err := outbox.Purge(ctx, pool, time.Now().Add(-24*time.Hour), 10)
	if err != nil || n != 1 {
		t.Fatalf("Purge = %d, %v; want 1 (the row sent two days ago)", n, err)
	}
	var left []string
	rows, err := pool.Query(ctx, `SELECT event_type FROM outbox ORDER BY event_type`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		left = append(left, s)
	}
	if len(left) != 2 || left[0] != "sent-recent" || left[1] != "unsent-old" {
		t.Errorf("left %v; want [sent-recent unsent-old]", left)
	}
}
