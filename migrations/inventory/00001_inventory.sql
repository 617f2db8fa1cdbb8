-- +goose Up
-- The catalogue. available is the stock that can still be reserved; the CHECK
-- is the last line of defence that keeps it from ever going below zero.
CREATE TABLE products (
    sku         text        PRIMARY KEY,
    name        text        NOT NULL,
    price_cents bigint      NOT NULL CHECK (price_cents >= 0),
    currency    text        NOT NULL DEFAULT 'USD',
    available   integer     NOT NULL CHECK (available >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One reservation per order: the primary key on order_id is what makes a
-- repeated reserve for the same order return the same reservation.
CREATE TABLE reservations (
    order_id   uuid        PRIMARY KEY,
    status     text        NOT NULL CHECK (status IN ('reserved', 'committed', 'released', 'expired')),
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- The sweeper's only query: live reservations past their expiry. Partial, so
-- it stays as small as the number of open reservations.
CREATE INDEX reservations_sweep ON reservations (expires_at) WHERE status = 'reserved';

-- The lines of a reservation, with the price at reserve time. The primary key
-- serves "items of one order" (and forbids a sku twice in one reservation).
CREATE TABLE reservation_items (
    order_id         uuid    NOT NULL REFERENCES reservations (order_id) ON DELETE CASCADE,
    sku              text    NOT NULL REFERENCES products (sku),
    quantity         integer NOT NULL CHECK (quantity > 0),
    unit_price_cents bigint  NOT NULL CHECK (unit_price_cents >= 0),
    PRIMARY KEY (order_id, sku)
);

-- +goose Down
DROP TABLE reservation_items;
DROP TABLE reservations;
DROP TABLE products;
