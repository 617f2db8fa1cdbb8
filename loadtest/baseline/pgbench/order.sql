-- The minimal order transaction (pgbench -f): insert the order and take its
-- stock with a conditional decrement, in one transaction. This is the
-- database's ceiling for orders on this machine: one order in Orderflow runs
-- several such transactions across four databases plus the HTTP hops.
\set sku random(1, 1000)
\set qty random(1, 3)
BEGIN;
INSERT INTO orders (id, customer_id, sku, quantity, total_cents)
    VALUES (gen_random_uuid(), 'cus_' || :client_id, :sku, :qty, 1999 * :qty);
UPDATE stock SET available = available - :qty WHERE sku = :sku AND available >= :qty;
COMMIT;
