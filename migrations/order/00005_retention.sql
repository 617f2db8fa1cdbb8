-- +goose Up
-- The retention job (pkg/retention, order's main) deletes answered
-- idempotency keys older than 24 h and outbox rows sent more than 24 h ago,
-- a batch at a time, oldest first: these indexes find each batch without a
-- scan. On a large live table, build them with CREATE INDEX CONCURRENTLY
-- (outside a transaction) instead.
SET LOCAL statement_timeout = 0;
CREATE INDEX idempotency_keys_answered_created ON idempotency_keys (created_at) WHERE status_code IS NOT NULL;
CREATE INDEX outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;

-- +goose Down
DROP INDEX outbox_sent;
DROP INDEX idempotency_keys_answered_created;
