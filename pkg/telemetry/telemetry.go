package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Telemetry holds one process's tracer and meter providers. They are passed
// explicitly to the instrumentation (otelhttp, otelpgx, redisotel) instead of
// being installed as globals.
type Telemetry struct {
	Tracer     *sdktrace.TracerProvider
	Meter      *sdkmetric.MeterProvider
	Propagator propagation.TextMapPropagator
	registry   *prometheus.Registry
	// httpMetrics is HTTPMetrics on the provider's meter, built once in
	// Setup, where an instrument error can be returned.
	httpMetrics func(http.Handler) http.Handler
	// tracing is false with OTEL_SDK_DISABLED: then the HTTP and Redis
	// instrumentation is not installed at all, instead of making
	// non-recording spans on every request and command.
	tracing bool
	// stopDebug stops the profiling listener; nil without DEBUG_ADDR.
	stopDebug func(context.Context) error
}

// Config selects where traces go and how many are kept. Read it with
// ReadConfig from the standard OTEL_* variables.
type Config struct {
	Service  string
	Version  string
	Endpoint string  // OTLP/HTTP traces URL; empty: spans are made but not exported
	Ratio    float64 // share of root traces sampled, 0..1
	Disabled bool    // OTEL_SDK_DISABLED: no spans at all
	// DebugAddr is where Setup serves the pprof profiles (DEBUG_ADDR, for
	// example 127.0.0.1:6060); empty, the default: nowhere.
	DebugAddr string
}

// ReadConfig reads OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (or
// OTEL_EXPORTER_OTLP_ENDPOINT plus /v1/traces), OTEL_TRACES_SAMPLER_ARG,
// OTEL_SDK_DISABLED and DEBUG_ADDR through getenv.
func ReadConfig(service string, getenv func(string) string) (Config, error) {
	c := Config{Service: service, Ratio: 1}
	if name := getenv("OTEL_SERVICE_NAME"); name != "" {
		c.Service = name
	}
	c.Endpoint = getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if base := getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); c.Endpoint == "" && base != "" {
		c.Endpoint = strings.TrimSuffix(base, "/") + "/v1/traces"
	}
	if v := getenv("OTEL_TRACES_SAMPLER_ARG"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r < 0 || r > 1 {
			return c, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%q must be a number between 0 and 1", v)
		}
		c.Ratio = r
	}
	c.Disabled = strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true")
	c.DebugAddr = getenv("DEBUG_ADDR")
	return c, nil
}

// Setup builds the providers and, with DebugAddr set, starts the profiling
// listener. Call Shutdown when the process stops, so the last spans are
// flushed and the listener closed.
func Setup(ctx context.Context, c Config) (*Telemetry, error) {
	res, err := resource.Merge(resource.Default(), resource.NewWithAttributes(semconv.SchemaURL,
		semconv.ServiceName(c.Service), semconv.ServiceVersion(c.Version)))
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	sampler := sdktrace.ParentBased(sdktrace.TraceIDRatioBased(c.Ratio))
	if c.Disabled {
		sampler = sdktrace.NeverSample()
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(sampler)}
	if c.Endpoint != "" && !c.Disabled {
		exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(c.Endpoint))
		if err != nil {
			return nil, fmt.Errorf("otlp trace exporter: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Second)))
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	promExp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	// The SDK's default exemplar filter is trace-based: a measurement made
	// with the context of a sampled span keeps that span's trace id as an
	// exemplar of its histogram bucket; OTEL_METRICS_EXEMPLAR_FILTER
	// (always_on, always_off, trace_based) is read by the SDK itself.
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(promExp),
		sdkmetric.WithView(nonBaseUnitViews()...))
	httpMetrics, err := HTTPMetrics(mp.Meter("orderflow/http"))
	if err != nil {
		return nil, err
	}
	var stopDebug func(context.Context) error
	if c.DebugAddr != "" {
		if stopDebug, err = serveDebug(c.DebugAddr); err != nil {
			return nil, err
		}
	}
	return &Telemetry{
		stopDebug:   stopDebug,
		Tracer:      sdktrace.NewTracerProvider(opts...),
		Meter:       mp,
		Propagator:  propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		registry:    reg,
		httpMetrics: httpMetrics,
		tracing:     !c.Disabled,
	}, nil
}

// Scopes of the instrumentation libraries whose meters nonBaseUnitViews
// adjusts.
const (
	otelpgxScope   = "github.com/exaring/otelpgx"
	redisotelScope = "github.com/redis/go-redis/extra/redisotel"
)

// nonBaseUnitViews drops the instruments otelpgx and redisotel record in
// nanoseconds and milliseconds. Prometheus wants times in seconds (promtool
// check metrics reports every other unit), and a view can rename an
// instrument but not scale its values, so ObservePool and InstrumentRedis
// record the same times again in seconds, under the same names.
func nonBaseUnitViews() []sdkmetric.View {
	drop := func(scope, name string) sdkmetric.View {
		return sdkmetric.NewView(sdkmetric.Instrument{Name: name, Scope: instrumentation.Scope{Name: scope}},
			sdkmetric.Stream{Aggregation: sdkmetric.AggregationDrop{}})
	}
	return []sdkmetric.View{
		drop(otelpgxScope, "pgxpool.acquire_duration"),               // ns
		drop(otelpgxScope, "pgxpool.empty_acquire_wait_time"),        // ns
		drop(redisotelScope, "db.client.connections.waits_duration"), // ns
		drop(redisotelScope, "db.client.connections.create_time"),    // ms
		drop(redisotelScope, "db.client.connections.use_time"),       // ms
	}
}

// MetricsHandler serves the registry for GET /metrics (MetricsPath): the
// Prometheus text format by default, and OpenMetrics to a scraper that asks
// for it (Accept: application/openmetrics-text), the only text format that
// carries exemplars. The text format stays what `promtool check metrics`
// lints; no _created samples are added to either.
func (t *Telemetry) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{EnableOpenMetrics: true})
}

// MeterFor returns a named meter for a package's own instruments: each
// package that owns a behaviour creates its instruments on the meter it is
// given (resilience.Downstream.Instrument, queue.WatchDepth, …).
func (t *Telemetry) MeterFor(name string) metric.Meter { return t.Meter.Meter(name) }

// Shutdown flushes and stops both providers and the profiling listener.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var debugErr error
	if t.stopDebug != nil {
		debugErr = t.stopDebug(ctx)
	}
	return errors.Join(t.Tracer.Shutdown(ctx), t.Meter.Shutdown(ctx), debugErr)
}

// Close flushes the last spans within five seconds, even when ctx is
// already cancelled (it usually is: run is returning), and logs a failure
// instead of returning it, for a deferred call.
func (t *Telemetry) Close(ctx context.Context, log *slog.Logger) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := t.Shutdown(sctx); err != nil {
		log.WarnContext(sctx, "telemetry shutdown", "error", err.Error())
	}
}
