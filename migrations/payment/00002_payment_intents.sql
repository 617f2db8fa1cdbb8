-- +goose Up
-- A payment intent is written, with its Idempotency-Key, before the
-- provider is called, and settled after: captured (the payment row exists
-- too) or declined. pending means the outcome is unknown (the provider
-- timed out or failed, or recording its answer failed): the key is kept and
-- the reconciler, a retry with the same key, or a list of the order's
-- payments settles it by asking the provider by provider_key. An intent
-- whose charge never happened is deleted with its key (ON DELETE CASCADE),
-- so the key may be used again. id is the payment's id once captured.
CREATE TABLE payment_intents (
    key                text        PRIMARY KEY REFERENCES idempotency_keys (key) ON DELETE CASCADE,
    id                 uuid        NOT NULL UNIQUE,
    order_id           uuid        NOT NULL,
    amount_cents       bigint      NOT NULL CHECK (amount_cents > 0),
    currency           text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    method             text        NOT NULL,
    provider_key       text        NOT NULL,
    state              text        NOT NULL CHECK (state IN ('pending', 'captured', 'declined')),
    provider_charge_id text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- The unknown intents, small at any time: by order for GET
-- /v1/payments?order_id=, by age for the reconciler.
CREATE INDEX payment_intents_pending_order_idx ON payment_intents (order_id) WHERE state = 'pending';
CREATE INDEX payment_intents_pending_idx ON payment_intents (created_at) WHERE state = 'pending';

-- parked: the claim's request ended without knowing the outcome, so a retry
-- with the key takes it over at once instead of waiting for it to go stale.
ALTER TABLE idempotency_keys ADD COLUMN parked boolean NOT NULL DEFAULT false;

-- Retention deletes answered keys (and their settled intents) by age.
CREATE INDEX idempotency_keys_answered_idx ON idempotency_keys (created_at) WHERE status_code IS NOT NULL;

-- +goose Down
DROP INDEX idempotency_keys_answered_idx;
ALTER TABLE idempotency_keys DROP COLUMN parked;
DROP TABLE payment_intents;
