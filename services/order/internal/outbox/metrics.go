package outbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/metric"
)

// scrapeQueryTimeout bounds both queries of a scrape together. A scrape runs
// every scrape-time query of the process one after the other, and a scrape
// that outlasts Prometheus's timeout loses every metric of the process, so a
// slow database must cost these two gauges, not the whole /metrics.
const scrapeQueryTimeout = time.Second

// ObserveLag exports the outbox backlog, read from the table when scraped:
// orderflow_outbox_lag_seconds, the age of the oldest unsent event (0 when
// none waits; it grows without bound while SQS is down), and
// orderflow_outbox_unsent, how many wait. Both queries use the partial index
// outbox_unsent, so they stay cheap however large the sent history grows.
func ObserveLag(pool *pgxpool.Pool, meter metric.Meter) error {
	lag, err := meter.Float64ObservableGauge("orderflow.outbox.lag",
		metric.WithUnit("s"), metric.WithDescription("Age of the oldest outbox event not yet published."))
	if err != nil {
		return fmt.Errorf("outbox lag metric: %w", err)
	}
	unsent, err := meter.Int64ObservableGauge("orderflow.outbox.unsent",
		metric.WithDescription("Outbox events not yet published."))
	if err != nil {
		return fmt.Errorf("outbox unsent metric: %w", err)
	}
	_, err = meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, scrapeQueryTimeout)
		defer cancel()
		const oldest = `SELECT created_at FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT 1`
		var created time.Time
		err := pool.QueryRow(ctx, oldest).Scan(&created)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			o.ObserveFloat64(lag, 0)
		case err != nil:
			return fmt.Errorf("outbox lag: %w", err)
		default:
			o.ObserveFloat64(lag, max(time.Since(created).Seconds(), 0))
		}
		const count = `SELECT count(*) FROM outbox WHERE sent_at IS NULL`
		var n int64
		if err := pool.QueryRow(ctx, count).Scan(&n); err != nil {
			return fmt.Errorf("outbox unsent: %w", err)
		}
		o.ObserveInt64(unsent, n)
		return nil
	}, lag, unsent)
	if err != nil {
		return fmt.Errorf("outbox metrics callback: %w", err)
	}
	return nil
}
