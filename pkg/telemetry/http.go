package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// MetricsPath is where every service serves MetricsHandler, as a route of
// its own router (routes.go).
const MetricsPath = "/metrics"

// untraced are the paths that get no span: probes and scrapes run every few
// seconds and would bury the traces a person is looking for.
var untraced = map[string]bool{"/healthz": true, "/readyz": true, MetricsPath: true}

// DurationBuckets are the histogram bounds, in seconds, of every latency
// Orderflow records: fine below 100 ms where a healthy API lives, coarse up
// to the 15 s saga deadline, so P95/P99 are readable in both regimes.
var DurationBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15}

// Middleware wraps a service's whole HTTP handler, its router with
// GET /metrics among its routes, for serving:
//
//   - every request gets a server span that continues the caller's W3C
//     trace context (otelhttp), except probes and scrapes;
//   - and the RED metrics of HTTPMetrics, labelled with the chi route,
//     except scrapes: Prometheus's own traffic is not the service's.
//
// otelhttp's own metrics are switched off: HTTPMetrics records the same
// with the route label that otelhttp cannot see. With tracing disabled
// (OTEL_SDK_DISABLED=true) otelhttp is left out altogether.
func (t *Telemetry) Middleware(h http.Handler) http.Handler {
	serve := t.httpMetrics(h)
	if !t.tracing {
		return serve
	}
	return otelhttp.NewHandler(serve, "http.server",
		otelhttp.WithTracerProvider(t.Tracer),
		otelhttp.WithMeterProvider(noop.NewMeterProvider()),
		otelhttp.WithPropagators(t.Propagator),
		otelhttp.WithFilter(func(r *http.Request) bool { return !untraced[r.URL.Path] }),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method }),
	)
}

// Transport wraps base so every outgoing request gets a client span and
// carries the trace context in its traceparent header. Wrap the innermost
// transport, under any retry policy, so each attempt is its own span: for a
// guarded downstream, resilience.New(name, p, tel.Transport(resilience.NewTransport()), log).
func (t *Telemetry) Transport(base http.RoundTripper) http.RoundTripper {
	if !t.tracing {
		return base
	}
	return otelhttp.NewTransport(base,
		otelhttp.WithTracerProvider(t.Tracer),
		otelhttp.WithMeterProvider(noop.NewMeterProvider()),
		otelhttp.WithPropagators(t.Propagator),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			return r.Method + " " + r.URL.Host
		}),
	)
}

// HTTPMetrics returns middleware recording the RED metrics of every request
// on m: orderflow_http_request_duration_seconds (histogram),
// orderflow_http_requests_total and orderflow_http_requests_in_flight,
// labelled by route (the chi route pattern, never the raw path, so ids do
// not explode the label set), method and status; 429 answers also count in
// orderflow_ratelimit_rejections_total. GET /metrics is not recorded.
//
// The duration is recorded with the request's context, so under a sampled
// server span its bucket keeps the trace id as an exemplar (the SDK's
// trace-based exemplar filter): a slow bucket on the dashboard links to a
// trace of a request that landed in it.
//
// It wraps a service's whole chi router from the outside: it hands the
// router a chi route context to fill in, so it reads the matched pattern
// after the request without any change to the service's routes. It also
// renames the request's server span to "METHOD /route", which is what a
// trace UI should group by.
func HTTPMetrics(m metric.Meter) (func(http.Handler) http.Handler, error) {
	duration, err1 := m.Float64Histogram("orderflow.http.request.duration",
		metric.WithUnit("s"), metric.WithDescription("Time to serve an HTTP request, by route, method and status."),
		metric.WithExplicitBucketBoundaries(DurationBuckets...))
	requests, err2 := m.Int64Counter("orderflow.http.requests",
		metric.WithDescription("HTTP requests served, by route, method and status."))
	inFlight, err3 := m.Int64UpDownCounter("orderflow.http.requests.in_flight",
		metric.WithDescription("HTTP requests being served now."))
	rejected, err4 := m.Int64Counter("orderflow.ratelimit.rejections",
		metric.WithDescription("Requests refused with 429 by the rate limiter, by route."))
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return nil, fmt.Errorf("http metrics: %w", err)
	}
	// One attribute set per route, method and status, built once rather
	// than on every request.
	var sets sync.Map // attrKey -> metric.MeasurementOption
	attrsFor := func(route, method string, status int) metric.MeasurementOption {
		k := attrKey{route, method, status}
		if v, ok := sets.Load(k); ok {
			return v.(metric.MeasurementOption)
		}
		v, _ := sets.LoadOrStore(k, metric.WithAttributeSet(attribute.NewSet(
			attribute.String("route", route), attribute.String("method", method),
			attribute.String("status", strconv.Itoa(status)))))
		return v.(metric.MeasurementOption)
	}
	// Methods are a bounded label: one a client invents counts as OTHER, so
	// it cannot become a time series of its own. The in-flight gauge is
	// labelled by method alone; its sets are built here, once.
	methodAttrs := map[string]metric.MeasurementOption{}
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace, "OTHER"} {
		methodAttrs[m] = metric.WithAttributeSet(attribute.NewSet(attribute.String("method", m)))
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == MetricsPath {
				next.ServeHTTP(w, r)
				return
			}
			ctx := r.Context()
			rctx := chi.RouteContext(ctx)
			if rctx == nil {
				rctx = chi.NewRouteContext()
				r = r.WithContext(context.WithValue(ctx, chi.RouteCtxKey, rctx))
			}
			method := r.Method
			if _, known := methodAttrs[method]; !known {
				method = "OTHER"
			}
			inFlight.Add(ctx, 1, methodAttrs[method])
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			start := time.Now()
			defer func() {
				// A handler that wrote nothing answered 200.
				status := ww.Status()
				if status == 0 {
					status = http.StatusOK
				}
				route := rctx.RoutePattern()
				if route == "" {
					route = "unmatched" // 404s: never the raw path
				}
				attrs := attrsFor(route, method, status)
				duration.Record(ctx, time.Since(start).Seconds(), attrs)
				requests.Add(ctx, 1, attrs)
				inFlight.Add(ctx, -1, methodAttrs[method])
				if status == http.StatusTooManyRequests {
					rejected.Add(ctx, 1, metric.WithAttributes(attribute.String("route", route)))
				}
				if span := trace.SpanFromContext(ctx); span.IsRecording() && route != "unmatched" {
					span.SetName(r.Method + " " + route)
					span.SetAttributes(semconv.HTTPRoute(route))
				}
			}()
			next.ServeHTTP(ww, r)
		})
	}, nil
}

type attrKey struct {
	route, method string
	status        int
}
