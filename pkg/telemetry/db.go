package telemetry

import (
	"fmt"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
)

// PgxTracer returns the pgx tracer for a pool of database db: a span per
// query, batch, prepare, connect and pool acquire, and the query latency
// histogram db_client_operation_duration_seconds. Set it before the pool is
// created (postgres.WithTracer); statements are recorded, parameters never.
func (t *Telemetry) PgxTracer(db string) *otelpgx.Tracer {
	return otelpgx.NewTracer(
		otelpgx.WithTracerProvider(t.Tracer),
		otelpgx.WithMeterProvider(t.Meter),
		otelpgx.WithMeterAttributes(attribute.String("db", db)),
		otelpgx.WithTrimSQLInSpanName(),
		// Pool waits show in pgxpool_empty_acquire_wait_time; a span per
		// acquire would double the spans of every request.
		otelpgx.WithDisableAcquireTracer(),
		// Host, port, user and database are the same on every span of a
		// pool; the pool's db attribute and the resource already say it.
		otelpgx.WithDisableConnectionDetailsInAttributes(),
	)
}

// ObservePool exports the pool's statistics (pgxpool_acquired_connections,
// pgxpool_idle_connections, pgxpool_total_connections,
// pgxpool_max_connections, acquire counts and waits), read when scraped.
func (t *Telemetry) ObservePool(pool *pgxpool.Pool, db string) error {
	if err := otelpgx.RecordStats(pool,
		otelpgx.WithStatsMeterProvider(t.Meter),
		otelpgx.WithStatsAttributes(attribute.String("db", db)),
	); err != nil {
		return fmt.Errorf("pool metrics: %w", err)
	}
	return nil
}
