-- Runs once, when the postgres container initialises an empty data
-- directory: one database per service on the one server, as in the brief,
-- plus identity's (customer accounts), Ory Hydra's and the simulated
-- payment provider's ledger (provider). Each service creates
-- its own tables with its migrations on start-up; Hydra's pods migrate
-- theirs in an init container.
CREATE DATABASE orders;
CREATE DATABASE inventory;
CREATE DATABASE payments;
CREATE DATABASE notifications;
CREATE DATABASE identity;
CREATE DATABASE hydra;
CREATE DATABASE provider;
