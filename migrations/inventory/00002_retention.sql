-- +goose Up
-- The retention job (pkg/retention, inventory's main) deletes released and
-- expired reservations (and their items, ON DELETE CASCADE) 30 days after
-- they ended, a batch at a time, oldest first; committed ones are sales and
-- stay. On a large live table, build it with CREATE INDEX CONCURRENTLY.
SET LOCAL statement_timeout = 0;
CREATE INDEX reservations_ended ON reservations (updated_at) WHERE status IN ('released', 'expired');

-- +goose Down
DROP INDEX reservations_ended;
