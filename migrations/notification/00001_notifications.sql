-- +goose Up
-- processed_events is the idempotent-consumer ledger: a worker records an
-- event id in the same transaction as its effect, so a redelivered message
-- finds its id here and does nothing.
CREATE TABLE processed_events (
    consumer     text        NOT NULL,
    event_id     uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- invoice_counter holds the last invoice number in a single row. Taking the
-- next number with UPDATE ... RETURNING inside the invoice transaction keeps
-- the numbers gap-free: a rollback undoes the increment too (a sequence would
-- not), and the row lock serialises concurrent invoices.
CREATE TABLE invoice_counter (
    id   boolean PRIMARY KEY DEFAULT true CHECK (id),
    last bigint  NOT NULL
);
INSERT INTO invoice_counter (id, last) VALUES (true, 0);

CREATE TABLE invoices (
    number      bigint      PRIMARY KEY,
    order_id    uuid        NOT NULL,
    event_id    uuid        NOT NULL UNIQUE,
    total_cents bigint      NOT NULL,
    currency    text        NOT NULL,
    lines       jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- GET /v1/invoices?order_id= (ordered by number).
CREATE INDEX invoices_order_id ON invoices (order_id, number);

-- emails is written before the SMTP send (sent_at NULL) and locked while it
-- runs, so concurrent deliveries of one event wait for each other; sent_at
-- is set in the same transaction once the SMTP server accepted the message.
CREATE TABLE emails (
    id         uuid        PRIMARY KEY,
    event_id   uuid        NOT NULL UNIQUE,
    order_id   uuid        NOT NULL,
    "to"       text        NOT NULL,
    subject    text        NOT NULL,
    kind       text        NOT NULL CHECK (kind IN ('order_confirmed', 'payment_failed', 'order_cancelled')),
    body       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz
);
-- GET /v1/emails?order_id=.
CREATE INDEX emails_order_id ON emails (order_id);

-- +goose Down
DROP TABLE emails;
DROP TABLE invoices;
DROP TABLE invoice_counter;
DROP TABLE processed_events;
