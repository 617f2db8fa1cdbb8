// Package outbox implements order's transactional outbox: Queue writes an
// event in the caller's transaction, and a Relay publishes unsent events to
// SQS, so no event is lost between the database commit and the queue.
package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/pkg/events"
	"github.com/orderflow/orderflow/pkg/queue"
)

// Queue adds the insert of e to b, to go out with the batch's other
// statements in one round trip. Send the batch inside the transaction of
// the status change the event announces.
func Queue(ctx context.Context, b *pgx.Batch, e events.Order) error {
	q, args, err := insert(ctx, e)
	if err != nil {
		return err
	}
	b.Queue(q, args...)
	return nil
}

// insert is the statement that stores e, with the trace context of ctx.
func insert(ctx context.Context, e events.Order) (string, []any, error) {
	payload, err := json.Marshal(e)
	if err != nil {
		return "", nil, fmt.Errorf("encode event: %w", err)
	}
	// The trace context of the request is kept with the event, so the
	// relay's publish continues the order's trace (nil: untraced).
	var traceContext []byte
	if c := queue.TraceCarrier(ctx); c != nil {
		if traceContext, err = json.Marshal(c); err != nil {
			return "", nil, fmt.Errorf("encode trace context: %w", err)
		}
	}
	const q = `INSERT INTO outbox (event_id, event_type, order_id, payload, trace_context) VALUES ($1, $2, $3, $4, $5)`
	return q, []any{e.ID, e.Type, e.OrderID, payload, traceContext}, nil
}

// Purge deletes at most limit outbox rows sent before before, oldest first:
// once the queue has an event, its row has done its job. Unsent rows are
// never deleted, however old.
func Purge(ctx context.Context, pool *pgxpool.Pool, before time.Time, limit int) (int64, error) {
	const q = `
DELETE FROM outbox WHERE id IN (
    SELECT id FROM outbox
    WHERE sent_at < $1
    ORDER BY sent_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED)`
	tag, err := pool.Exec(ctx, q, before, limit)
	if err != nil {
		return 0, fmt.Errorf("purge sent outbox rows: %w", err)
	}
	return tag.RowsAffected(), nil
}
