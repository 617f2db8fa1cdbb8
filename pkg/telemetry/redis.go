package telemetry

import (
	"errors"
	"fmt"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
)

// InstrumentRedis adds a span per Redis command (and pipeline) and the
// client's pool and latency metrics to rdb.
func (t *Telemetry) InstrumentRedis(rdb *redis.Client) error {
	err := errors.Join(
		redisotel.InstrumentTracing(rdb, redisotel.WithTracerProvider(t.Tracer), redisotel.WithDBStatement(false)),
		redisotel.InstrumentMetrics(rdb, redisotel.WithMeterProvider(t.Meter)),
	)
	if err != nil {
		return fmt.Errorf("instrument redis: %w", err)
	}
	return nil
}
