package web

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// DurationBuckets are the histogram bounds, in seconds, of every latency
// Orderflow records: fine below 100 ms where a healthy API lives, coarse up
// to the 15 s saga deadline, so P95/P99 are readable in both regimes.
var DurationBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15}

// Metrics returns middleware recording the RED metrics of every request:
// orderflow_http_request_duration_seconds (histogram), orderflow_http_requests_total
// and orderflow_http_requests_in_flight, labelled by route (the chi route
// pattern, never the raw path, so ids do not explode the label set), method
// and status; 429 answers also count in orderflow_ratelimit_rejections_total.
//
// It wraps a service's whole chi router from the outside: it hands the router
// a chi route context to fill in, so it reads the matched pattern after the
// request without any change to the service's routes. It also renames the
// request's server span to "METHOD /route", which is what a trace UI should
// group by.
func Metrics(meter metric.Meter) func(http.Handler) http.Handler {
	duration, _ := meter.Float64Histogram("orderflow.http.request.duration",
		metric.WithUnit("s"), metric.WithDescription("Time to serve an HTTP request, by route, method and status."),
		metric.WithExplicitBucketBoundaries(DurationBuckets...))
	requests, _ := meter.Int64Counter("orderflow.http.requests",
		metric.WithDescription("HTTP requests served, by route, method and status."))
	inFlight, _ := meter.Int64UpDownCounter("orderflow.http.requests.in_flight",
		metric.WithDescription("HTTP requests being served now."))
	rejected, _ := meter.Int64Counter("orderflow.ratelimit.rejections",
		metric.WithDescription("Requests refused with 429 by the rate limiter, by route."))
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
	}
}

type attrKey struct {
	route, method string
	status        int
}
