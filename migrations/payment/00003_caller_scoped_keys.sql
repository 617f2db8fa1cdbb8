-- +goose Up
-- Idempotency-Keys are scoped by the caller, the access token's subject (a
-- service's client id): two callers that happen to send the same key get
-- independent payments, never each other's answer or a 422. The keys stored
-- before were all sent by the order service, the only client granted the
-- payments scope (deploy/hydra/clients/orderflow-order.json), so they are
-- its own: a retry of one after the upgrade still finds it, and its intent
-- keeps the provider key it was charged with.
ALTER TABLE idempotency_keys ADD COLUMN caller text NOT NULL DEFAULT 'orderflow-order';
ALTER TABLE payment_intents ADD COLUMN caller text NOT NULL DEFAULT 'orderflow-order';
ALTER TABLE idempotency_keys ALTER COLUMN caller DROP DEFAULT;
ALTER TABLE payment_intents ALTER COLUMN caller DROP DEFAULT;

ALTER TABLE payment_intents
    DROP CONSTRAINT payment_intents_key_fkey,
    DROP CONSTRAINT payment_intents_pkey;
ALTER TABLE idempotency_keys
    DROP CONSTRAINT idempotency_keys_pkey,
    ADD CONSTRAINT idempotency_keys_pkey PRIMARY KEY (caller, key);
ALTER TABLE payment_intents
    ADD CONSTRAINT payment_intents_pkey PRIMARY KEY (caller, key),
    ADD CONSTRAINT payment_intents_key_fkey FOREIGN KEY (caller, key)
        REFERENCES idempotency_keys (caller, key) ON DELETE CASCADE;

-- +goose Down
-- Fails where two callers hold the same key: that is the data the scoping
-- keeps apart.
ALTER TABLE payment_intents
    DROP CONSTRAINT payment_intents_key_fkey,
    DROP CONSTRAINT payment_intents_pkey;
ALTER TABLE idempotency_keys
    DROP CONSTRAINT idempotency_keys_pkey,
    ADD CONSTRAINT idempotency_keys_pkey PRIMARY KEY (key);
ALTER TABLE payment_intents
    ADD CONSTRAINT payment_intents_pkey PRIMARY KEY (key),
    ADD CONSTRAINT payment_intents_key_fkey FOREIGN KEY (key)
        REFERENCES idempotency_keys (key) ON DELETE CASCADE;
ALTER TABLE payment_intents DROP COLUMN caller;
ALTER TABLE idempotency_keys DROP COLUMN caller;
