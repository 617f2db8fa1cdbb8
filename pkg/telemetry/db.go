package telemetry

import (
	"context"
	"fmt"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
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
		// Pool waits show in pgxpool_empty_acquire_wait_time_seconds_total;
		// a span per acquire would double the spans of every request.
		otelpgx.WithDisableAcquireTracer(),
		// Host, port, user and database are the same on every span of a
		// pool; the pool's db attribute and the resource already say it.
		otelpgx.WithDisableConnectionDetailsInAttributes(),
	)
}

// ObservePool exports the pool's statistics (pgxpool_acquired_connections,
// pgxpool_idle_connections, pgxpool_total_connections,
// pgxpool_max_connections, acquire counts), read when scraped, and the time
// spent acquiring in seconds: pgxpool_acquire_duration_seconds_total and
// pgxpool_empty_acquire_wait_time_seconds_total, the part spent waiting
// because every connection was in use. otelpgx reports those two in
// nanoseconds; nonBaseUnitViews drops its versions.
func (t *Telemetry) ObservePool(pool *pgxpool.Pool, db string) error {
	if err := otelpgx.RecordStats(pool,
		otelpgx.WithStatsMeterProvider(t.Meter),
		otelpgx.WithStatsAttributes(attribute.String("db", db)),
	); err != nil {
		return fmt.Errorf("pool metrics: %w", err)
	}
	m := t.MeterFor("orderflow/pgxpool")
	acquire, err := m.Float64ObservableCounter("pgxpool.acquire_duration", metric.WithUnit("s"),
		metric.WithDescription("Total time spent in successful acquires from the pool."))
	if err != nil {
		return fmt.Errorf("pool acquire duration metric: %w", err)
	}
	wait, err := m.Float64ObservableCounter("pgxpool.empty_acquire_wait_time", metric.WithUnit("s"),
		metric.WithDescription("Total time successful acquires waited because the pool was empty."))
	if err != nil {
		return fmt.Errorf("pool wait time metric: %w", err)
	}
	// The same attributes as otelpgx's pool metrics, so the family joins.
	cc := pool.Config().ConnConfig
	attrs := metric.WithAttributeSet(attribute.NewSet(
		semconv.DBSystemNamePostgreSQL,
		semconv.DBClientConnectionPoolName(fmt.Sprintf("%s:%d/%s", cc.Host, cc.Port, cc.Database)),
		attribute.String("db", db)))
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := pool.Stat()
		o.ObserveFloat64(acquire, s.AcquireDuration().Seconds(), attrs)
		o.ObserveFloat64(wait, s.EmptyAcquireWaitTime().Seconds(), attrs)
		return nil
	}, acquire, wait)
	if err != nil {
		return fmt.Errorf("pool metrics callback: %w", err)
	}
	return nil
}
