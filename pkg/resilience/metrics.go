package resilience

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Instrument exports the state of d's policies on m, read when scraped:
// orderflow_breaker_state{downstream} (0 closed, 1 open, 2 half-open),
// orderflow_downstream_retries_total{downstream} and
// orderflow_downstream_rejections_total{downstream,reason="breaker_open"|"bulkhead_full"}.
// Every downstream of a process instruments the same meter: the SDK hands
// each the same three instruments, and each adds its own series.
func (d *Downstream) Instrument(m metric.Meter) error {
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
	name := attribute.String("downstream", d.name)
	byName := metric.WithAttributeSet(attribute.NewSet(name))
	byReason := map[string]metric.ObserveOption{}
	for _, reason := range []string{ReasonBreakerOpen, ReasonBulkheadFull} {
		byReason[reason] = metric.WithAttributeSet(attribute.NewSet(name, attribute.String("reason", reason)))
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(state, int64(d.State()), byName)
		o.ObserveInt64(retries, int64(d.Retries()), byName)
		for reason, attrs := range byReason {
			o.ObserveInt64(rejections, int64(d.Rejections(reason)), attrs)
		}
		return nil
	}, state, retries, rejections)
	if err != nil {
		return fmt.Errorf("downstream %s metrics callback: %w", d.name, err)
	}
	return nil
}
