-- +goose Up
-- The customer an invoice or e-mail belongs to (the order event's
-- customer_id), so a customer's reads return only their own. Rows from
-- before this column have '' and are visible to operators only.
ALTER TABLE invoices ADD COLUMN customer_id text NOT NULL DEFAULT '';
ALTER TABLE emails ADD COLUMN customer_id text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE emails DROP COLUMN customer_id;
ALTER TABLE invoices DROP COLUMN customer_id;
