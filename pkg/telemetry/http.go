package telemetry

import (
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/orderflow/orderflow/pkg/resilience"
	"github.com/orderflow/orderflow/pkg/web"
)

// untraced are the paths that get no span: probes and scrapes run every few
// seconds and would bury the traces a person is looking for.
var untraced = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// Handler wraps a service's whole HTTP handler for serving:
//
//   - GET /metrics answers from the Prometheus registry, before the service's
//     router, so a scrape is never traced, logged or rate limited;
//   - every other request gets a server span that continues the caller's W3C
//     trace context (otelhttp), except /healthz and /readyz;
//   - and the RED metrics of web.Metrics, labelled with the chi route.
//
// otelhttp's own metrics are switched off: web.Metrics records the same
// with the route label that otelhttp cannot see. With tracing disabled
// (OTEL_SDK_DISABLED=true) otelhttp is left out altogether.
func (t *Telemetry) Handler(h http.Handler) http.Handler {
	metrics := t.MetricsHandler()
	serve := web.Metrics(t.MeterFor("orderflow/http"))(h)
	if t.tracing {
		serve = otelhttp.NewHandler(serve, "http.server",
			otelhttp.WithTracerProvider(t.Tracer),
			otelhttp.WithMeterProvider(noop.NewMeterProvider()),
			otelhttp.WithPropagators(t.Propagator),
			otelhttp.WithFilter(func(r *http.Request) bool { return !untraced[r.URL.Path] }),
			otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method }),
		)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			metrics.ServeHTTP(w, r)
			return
		}
		serve.ServeHTTP(w, r)
	})
}

// Transport wraps base so every outgoing request gets a client span and
// carries the trace context in its traceparent header. A nil base is
// resilience.NewTransport's pooled transport. Wrap the
// innermost transport, under any retry policy, so each attempt is its own
// span.
func (t *Telemetry) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = resilience.NewTransport()
	}
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
