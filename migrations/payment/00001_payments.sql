-- +goose Up
-- One row per captured card payment. provider_charge_id is unique: the
-- provider returns the same charge for a retried idempotency key, so a second
-- row for one charge could only come from a bug.
CREATE TABLE payments (
    id                 uuid        PRIMARY KEY,
    order_id           uuid        NOT NULL,
    provider_charge_id text        NOT NULL UNIQUE,
    amount_cents       bigint      NOT NULL CHECK (amount_cents > 0),
    currency           text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    method             text        NOT NULL,
    status             text        NOT NULL CHECK (status IN ('captured', 'refunded')),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- Serves GET /v1/payments?order_id= (newest first) without a sort.
CREATE INDEX payments_order_id_idx ON payments (order_id, created_at DESC, id DESC);

-- Idempotency-Key claims. status_code NULL means the first request is still
-- in progress; created_at doubles as the claim's fencing token, so a stale
-- claim that another request took over can no longer complete or release it.
CREATE TABLE idempotency_keys (
    key          text        PRIMARY KEY,
    request_hash bytea       NOT NULL,
    status_code  int,
    response     jsonb,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE idempotency_keys;
DROP TABLE payments;
