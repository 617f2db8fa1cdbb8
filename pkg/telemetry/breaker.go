package telemetry

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/orderflow/orderflow/pkg/resilience"
)

// ObserveDownstreams exports the state of each downstream's failsafe-go
// policies, read when scraped: orderflow_breaker_state{downstream} (0
// closed, 1 open, 2 half-open), orderflow_downstream_retries_total and
// orderflow_downstream_rejections_total{reason="breaker_open"|"bulkhead_full"}.
func (t *Telemetry) ObserveDownstreams(ds ...*resilience.Downstream) error {
	m := t.MeterFor("orderflow/resilience")
	state, err := m.Int64ObservableGauge("orderflow.breaker.state",
		metric.WithDescription("Circuit breaker state per downstream: 0 closed, 1 open, 2 half-open."))
	if err != nil {
		return fmt.Errorf("breaker metric: %w", err)
	}
	retries, err := m.Int64ObservableCounter("orderflow.downstream.retries",
		metric.WithDescription("Retries scheduled per downstream."))
	if err != nil {
		return fmt.Errorf("retries metric: %w", err)
	}
	rejections, err := m.Int64ObservableCounter("orderflow.downstream.rejections",
		metric.WithDescription("Calls failed fast without reaching the downstream, by reason."))
	if err != nil {
		return fmt.Errorf("rejections metric: %w", err)
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, d := range ds {
			name := attribute.String("downstream", d.Name())
			o.ObserveInt64(state, int64(d.State()), metric.WithAttributes(name))
			o.ObserveInt64(retries, int64(d.Retries()), metric.WithAttributes(name))
			for _, reason := range []string{resilience.ReasonBreakerOpen, resilience.ReasonBulkheadFull} {
				o.ObserveInt64(rejections, int64(d.Rejections(reason)),
					metric.WithAttributes(name, attribute.String("reason", reason)))
			}
		}
		return nil
	}, state, retries, rejections)
	if err != nil {
		return fmt.Errorf("downstream metrics callback: %w", err)
	}
	return nil
}

// ObserveCounts exports counters kept elsewhere (atomic counters of a
// cache, a limiter) as one Prometheus counter, read when scraped: read
// returns the current total per value of label ("" as the only key and an
// empty label: no label).
func (t *Telemetry) ObserveCounts(name, description, label string, read func() map[string]uint64) error {
	_, err := t.MeterFor("orderflow").Int64ObservableCounter(name, metric.WithDescription(description),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			for v, n := range read() {
				if label == "" {
					o.Observe(int64(n))
					continue
				}
				o.Observe(int64(n), metric.WithAttributes(attribute.String(label, v)))
			}
			return nil
		}))
	if err != nil {
		return fmt.Errorf("metric %s: %w", name, err)
	}
	return nil
}
