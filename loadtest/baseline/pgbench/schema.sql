-- The pgbench baseline's scratch schema: the least an order needs on disk.
-- orders is an order row; stock is one counter per sku, with the CHECK that
-- keeps it from going below zero, as in inventory's products table.
DROP TABLE IF EXISTS orders;
DROP TABLE IF EXISTS stock;
CREATE TABLE orders (
    id          uuid        PRIMARY KEY,
    customer_id text        NOT NULL,
    sku         integer     NOT NULL,
    quantity    integer     NOT NULL,
    total_cents bigint      NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE stock (
    sku       integer PRIMARY KEY,
    available integer NOT NULL CHECK (available >= 0)
);
INSERT INTO stock SELECT g, 1000000000 FROM generate_series(1, 10000) AS g;
VACUUM ANALYZE stock;
