-- +goose Up
-- The simulated provider's ledger: what a real card processor keeps, so
-- that a restart of the process loses no charge or refund. idempotency_key
-- is unique: a repeated key returns the first charge instead of a second
-- one (NULL for charges sent without a key, which are never deduplicated).
CREATE TABLE charges (
    id              text        PRIMARY KEY,
    idempotency_key text        UNIQUE,
    amount_cents    bigint      NOT NULL CHECK (amount_cents > 0),
    currency        text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    method          text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Full refunds only: at most one per charge, so refunding twice is a no-op
-- and the refunded total never exceeds the captured one.
CREATE TABLE refunds (
    id           text        PRIMARY KEY,
    charge_id    text        NOT NULL UNIQUE REFERENCES charges (id),
    amount_cents bigint      NOT NULL CHECK (amount_cents > 0),
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE refunds;
DROP TABLE charges;
