package telemetry

import (
	"errors"
	"fmt"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
)

// InstrumentRedis adds a span per Redis command (and pipeline) and the
// client's pool and latency metrics to rdb. Spans carry no caller file and
// line: finding them walks the stack on every command, which cost a cached
// product read about 6% of its CPU. With tracing disabled only the metrics
// are installed.
func (t *Telemetry) InstrumentRedis(rdb *redis.Client) error {
	var errs []error
	if t.tracing {
		errs = append(errs, redisotel.InstrumentTracing(rdb, redisotel.WithTracerProvider(t.Tracer),
			redisotel.WithDBStatement(false), redisotel.WithCallerEnabled(false)))
	}
	errs = append(errs, redisotel.InstrumentMetrics(rdb, redisotel.WithMeterProvider(t.Meter)))
	err := errors.Join(errs...)
	if err != nil {
		return fmt.Errorf("instrument redis: %w", err)
	}
	return nil
}
