-- +goose Up
-- The W3C trace context (traceparent, tracestate) of the request that wrote
-- the event, so the relay's publish joins that request's trace even though
-- it runs later, in another goroutine or replica. NULL when untraced.
ALTER TABLE outbox ADD COLUMN trace_context jsonb;

-- +goose Down
ALTER TABLE outbox DROP COLUMN trace_context;
