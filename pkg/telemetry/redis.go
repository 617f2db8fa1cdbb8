package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// redisBuckets are the bounds, in seconds, of the Redis time histograms: a
// command on a healthy local Redis takes well under a millisecond, and the
// client gives up after 250 ms (pkg/redisconn).
var redisBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}

// InstrumentRedis adds a span per Redis command (and pipeline) and the
// client's metrics to rdb: redisotel's pool statistics
// (db_client_connections_usage{state}, _hits_total, _misses_total,
// _timeouts_total, _waits_total, …) and three times in seconds:
// db_client_connections_use_time_seconds (a histogram of commands and
// pipelines by type and status), db_client_connections_create_time_seconds
// (dials by status) and db_client_connections_waits_duration_seconds_total
// (time spent waiting for a free connection). redisotel records those
// three in milliseconds and nanoseconds; nonBaseUnitViews drops its
// versions. Spans carry no caller file and line: finding them walks the
// stack on every command. With tracing disabled only the metrics are
// installed.
func (t *Telemetry) InstrumentRedis(rdb *redis.Client) error {
	var errs []error
	if t.tracing {
		errs = append(errs, redisotel.InstrumentTracing(rdb, redisotel.WithTracerProvider(t.Tracer),
			redisotel.WithDBStatement(false), redisotel.WithCallerEnabled(false)))
	}
	// Semconv-compliant: the cumulative pool statistics are counters
	// (…_total), so rate() works on them, not gauges.
	errs = append(errs, redisotel.InstrumentMetrics(rdb, redisotel.WithMeterProvider(t.Meter),
		redisotel.WithSemConvCompliantMetrics(true)))
	errs = append(errs, t.recordRedisTimes(rdb))
	err := errors.Join(errs...)
	if err != nil {
		return fmt.Errorf("instrument redis: %w", err)
	}
	return nil
}

// recordRedisTimes installs the three Redis times in seconds.
func (t *Telemetry) recordRedisTimes(rdb *redis.Client) error {
	m := t.MeterFor("orderflow/redis")
	create, err := m.Float64Histogram("db.client.connections.create_time", metric.WithUnit("s"),
		metric.WithDescription("The time it took to create a new connection."),
		metric.WithExplicitBucketBoundaries(redisBuckets...))
	if err != nil {
		return fmt.Errorf("redis create time metric: %w", err)
	}
	use, err := m.Float64Histogram("db.client.connections.use_time", metric.WithUnit("s"),
		metric.WithDescription("The time between borrowing a connection and returning it to the pool, per command or pipeline."),
		metric.WithExplicitBucketBoundaries(redisBuckets...))
	if err != nil {
		return fmt.Errorf("redis use time metric: %w", err)
	}
	waits, err := m.Float64ObservableCounter("db.client.connections.waits_duration", metric.WithUnit("s"),
		metric.WithDescription("The total time spent waiting for a free connection."))
	if err != nil {
		return fmt.Errorf("redis wait time metric: %w", err)
	}
	pool := attribute.String("pool.name", rdb.Options().Addr)
	poolSet := metric.WithAttributeSet(attribute.NewSet(pool))
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveFloat64(waits, time.Duration(rdb.PoolStats().WaitDurationNs).Seconds(), poolSet)
		return nil
	}, waits)
	if err != nil {
		return fmt.Errorf("redis wait time callback: %w", err)
	}
	rdb.AddHook(newRedisTimes(create, use, pool))
	return nil
}

// redisTimes is the go-redis hook that records dials, commands and
// pipelines. Its attribute sets are built once: the hook runs on every
// command of a cached read.
type redisTimes struct {
	create, use metric.Float64Histogram
	sets        map[[2]string]metric.MeasurementOption // {type, status}; type "" for dials
}

func newRedisTimes(create, use metric.Float64Histogram, pool attribute.KeyValue) *redisTimes {
	r := &redisTimes{create: create, use: use, sets: map[[2]string]metric.MeasurementOption{}}
	for _, typ := range []string{"", "command", "pipeline"} {
		for _, status := range []string{"ok", "nil", "error"} {
			kv := []attribute.KeyValue{pool, attribute.String("status", status)}
			if typ != "" {
				kv = append(kv, attribute.String("type", typ))
			}
			r.sets[[2]string{typ, status}] = metric.WithAttributeSet(attribute.NewSet(kv...))
		}
	}
	return r
}

// attrs is the attribute set of a call of type typ that ended with err.
func (r *redisTimes) attrs(typ string, err error) metric.MeasurementOption {
	status := "ok"
	switch {
	case errors.Is(err, redis.Nil):
		status = "nil" // a miss, not a failure
	case err != nil:
		status = "error"
	}
	return r.sets[[2]string{typ, status}]
}

func (r *redisTimes) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		start := time.Now()
		conn, err := next(ctx, network, addr)
		r.create.Record(ctx, time.Since(start).Seconds(), r.attrs("", err))
		return conn, err
	}
}

func (r *redisTimes) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		r.use.Record(ctx, time.Since(start).Seconds(), r.attrs("command", err))
		return err
	}
}

func (r *redisTimes) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		r.use.Record(ctx, time.Since(start).Seconds(), r.attrs("pipeline", err))
		return err
	}
}
