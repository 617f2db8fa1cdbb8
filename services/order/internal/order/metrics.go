package order

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/orderflow/orderflow/pkg/telemetry"
)

// The outcomes of one of the recovery loop's compensation attempts, the
// outcome label of orderflow_compensation_attempts_total.
const (
	attemptDone      = "done"            // everything undone
	attemptRetry     = "retry"           // failed; retried after its backoff
	attemptParked    = "needs_attention" // failed for the last time; parked
	attemptUnsettled = "unsettled"       // payment could not list the charges yet; asked again
)

// metrics are the service's instruments, recorded where the use cases
// decide what they count.
type metrics struct {
	orders   metric.Int64Counter
	duration metric.Float64Histogram
	attempts metric.Int64Counter
}

// noMetrics records nothing: the service's metrics before Instrument.
func noMetrics() metrics {
	return metrics{orders: noop.Int64Counter{}, duration: noop.Float64Histogram{}, attempts: noop.Int64Counter{}}
}

// scrapeQueryTimeout bounds the query a scrape runs. A scrape runs every
// scrape-time query of the process one after the other, and a scrape that
// outlasts Prometheus's timeout loses every metric of the process, so a slow
// database must cost this gauge, not the whole /metrics.
const scrapeQueryTimeout = time.Second

// Instrument creates the service's instruments on m. Call it once, before
// the service takes requests or runs the recovery loop.
//
//   - orderflow_orders_total{status} and
//     orderflow_saga_duration_seconds{status}: every order once, when its
//     final status is written: by the saga (confirmed, rejected,
//     payment_failed, failed) or by the recovery loop failing a dead saga
//     (failed), with the time from its creation. Replays and cancels are
//     not counted.
//   - orderflow_compensation_attempts_total{outcome}: the recovery loop's
//     attempts, by outcome (done, retry, needs_attention, unsettled).
//   - orderflow_compensation_needs_attention: the compensations parked for
//     an operator (GET /admin/compensations) over all replicas, read from
//     the database when scraped; the alert fires while it is above 0.
func (s *Service) Instrument(m metric.Meter) error {
	orders, err1 := m.Int64Counter("orderflow.orders",
		metric.WithDescription("Orders that reached their final status in the saga or the recovery loop, by status."))
	duration, err2 := m.Float64Histogram("orderflow.saga.duration", metric.WithUnit("s"),
		metric.WithDescription("Time from order creation to its final status, by final status."),
		metric.WithExplicitBucketBoundaries(telemetry.DurationBuckets...))
	attempts, err3 := m.Int64Counter("orderflow.compensation.attempts",
		metric.WithDescription("The recovery loop's compensation attempts by outcome: done, retry (failed, retried later), "+
			"needs_attention (failed for the last time), unsettled (payment could not list the charges yet; asked again)."))
	_, err4 := m.Int64ObservableGauge("orderflow.compensation.needs_attention",
		metric.WithDescription("Orders whose compensation (refund, release) failed every automatic attempt and waits for an operator."),
		metric.WithInt64Callback(func(ctx context.Context, o metric.Int64Observer) error {
			ctx, cancel := context.WithTimeout(ctx, scrapeQueryTimeout)
			defer cancel()
			n, err := s.store.countNeedingAttention(ctx)
			if err != nil {
				return err
			}
			o.Observe(int64(n))
			return nil
		}))
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return fmt.Errorf("order metrics: %w", err)
	}
	s.metrics = metrics{orders: orders, duration: duration, attempts: attempts}
	return nil
}

// finished counts an order that reached its final status, created at
// created.
func (m metrics) finished(ctx context.Context, status string, created time.Time) {
	attrs := metric.WithAttributes(attribute.String("status", status))
	m.orders.Add(ctx, 1, attrs)
	m.duration.Record(ctx, time.Since(created).Seconds(), attrs)
}

// attempt counts one compensation attempt of the recovery loop.
func (m metrics) attempt(ctx context.Context, outcome string) {
	m.attempts.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome)))
}
