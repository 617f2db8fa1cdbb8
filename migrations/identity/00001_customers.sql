-- +goose Up
-- Customer accounts of the login app. Hydra keeps no users: it asks the
-- identity service who signed in, and the customer's id becomes the token's
-- sub. E-mails are stored lower-cased, so the unique constraint is also
-- case-insensitive, and it is the index the login query reads.
CREATE TABLE customers (
    id            text        PRIMARY KEY CHECK (id ~ '^cus_[a-z2-7]{26}$'),
    email         text        NOT NULL CHECK (email = lower(email)),
    name          text        NOT NULL,
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT customers_email_key UNIQUE (email)
);

-- +goose Down
DROP TABLE customers;
