-- Runs once, when the postgres container initialises an empty data
-- directory: one database per service on the one server, as in the brief,
-- plus identity's (customer accounts) and Ory Hydra's. Each service creates
-- its own tables with its migrations on start-up; hydra-migrate creates
-- Hydra's.
CREATE DATABASE orders;
CREATE DATABASE inventory;
CREATE DATABASE payments;
CREATE DATABASE notifications;
CREATE DATABASE identity;
CREATE DATABASE hydra;
