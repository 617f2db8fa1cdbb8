-- Runs once, when the postgres container initialises an empty data
-- directory: one database per service on the one server, as in the brief.
-- Each service creates its own tables with its migrations on start-up.
CREATE DATABASE orders;
CREATE DATABASE inventory;
CREATE DATABASE payments;
CREATE DATABASE notifications;
