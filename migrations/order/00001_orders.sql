-- +goose Up
-- Orders, their lines and the idempotency keys of POST /v1/orders.
CREATE TABLE orders (
    id               uuid        PRIMARY KEY,
    customer_id      text        NOT NULL,
    email            text,
    status           text        NOT NULL CHECK (status IN
                         ('pending', 'confirmed', 'rejected', 'payment_failed', 'failed', 'cancelled')),
    payment_method   text        NOT NULL,
    total_cents      bigint      NOT NULL DEFAULT 0,
    currency         text        NOT NULL DEFAULT 'USD',
    payment_id       text,
    failure_reason   text,
    -- When set, the recovery loop must (re)run the compensation (release the
    -- reservation, refund captured payments) from this time on.
    compensate_after timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
-- GET /v1/orders?customer_id=: keyset pagination newest first.
CREATE INDEX orders_customer_created ON orders (customer_id, created_at DESC, id DESC);
-- Recovery: sagas that died while the order was pending.
CREATE INDEX orders_pending_created ON orders (created_at) WHERE status = 'pending';
-- Recovery: compensations that are due.
CREATE INDEX orders_compensate_after ON orders (compensate_after) WHERE compensate_after IS NOT NULL;

CREATE TABLE order_items (
    order_id         uuid    NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    sku              text    NOT NULL,
    quantity         integer NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
    unit_price_cents bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (order_id, sku)
);

-- One row per Idempotency-Key. status_code NULL means the request that owns
-- the key is still running; the final response is stored in the same
-- transaction as the order's final status.
CREATE TABLE idempotency_keys (
    key          text        PRIMARY KEY,
    request_hash bytea       NOT NULL,
    order_id     uuid        NOT NULL,
    status_code  integer,
    response     jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
-- Recovery stores a 503 in the key row of an order whose saga died.
CREATE INDEX idempotency_keys_order ON idempotency_keys (order_id);

-- +goose Down
DROP TABLE idempotency_keys;
DROP TABLE order_items;
DROP TABLE orders;
