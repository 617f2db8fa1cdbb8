-- +goose Up
-- A compensation (release the reservation, refund captured payments) that
-- keeps failing is retried with exponential backoff (compensate_after is the
-- next attempt) and, after ORDER_COMPENSATION_MAX_ATTEMPTS failures, parked:
-- compensate_after becomes NULL so the recovery loop leaves it alone, and
-- needs_attention_at says since when an operator must look at it
-- (GET /admin/compensations; POST /admin/compensations/{order_id}/retry
-- makes it due again). Both new columns are cheap to add: a constant default
-- and a NULL column change no existing row.
ALTER TABLE orders
    ADD COLUMN compensation_attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN compensation_error    text,
    ADD COLUMN needs_attention_at    timestamptz;
-- The admin list (keyset on needs_attention_at, id) and the gauge's count:
-- parked compensations are few, so the index is tiny.
CREATE INDEX orders_needs_attention ON orders (needs_attention_at, id) WHERE needs_attention_at IS NOT NULL;

-- +goose Down
DROP INDEX orders_needs_attention;
ALTER TABLE orders
    DROP COLUMN needs_attention_at,
    DROP COLUMN compensation_error,
    DROP COLUMN compensation_attempts;
