-- +goose Up
-- The retention job (pkg/retention, notification's main) deletes
-- processed-event ids 14 days after processing, a batch at a time: no queue
-- keeps a message longer (SQS's longest retention), so no redelivery can
-- need them. Invoices and e-mails are records and stay.
SET LOCAL statement_timeout = 0;
CREATE INDEX processed_events_processed_at ON processed_events (processed_at);

-- +goose Down
DROP INDEX processed_events_processed_at;
