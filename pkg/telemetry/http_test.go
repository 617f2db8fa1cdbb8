package telemetry_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/orderflow/orderflow/pkg/telemetry"
	"github.com/orderflow/orderflow/pkg/web"
)

// points returns the data points of the named sum or histogram as
// "route method status" → count.
func points(t *testing.T, rm metricdata.ResourceMetrics, name string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	key := func(s attribute.Set) string {
		r, _ := s.Value("route")
		m, _ := s.Value("method")
		st, _ := s.Value("status")
		return r.AsString() + " " + m.AsString() + " " + st.AsString()
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[key(p.Attributes)] += p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out[key(p.Attributes)] += int64(p.Count)
				}
			}
		}
	}
	return out
}

func TestHTTPMetrics_LabelsWithTheRoutePattern(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	meter := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test")
	r := web.NewRouter(slog.New(slog.DiscardHandler))
	r.Get("/v1/things/{id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	r.Get("/limited", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTooManyRequests) })
	r.Get("/silent", func(w http.ResponseWriter, r *http.Request) {})
	r.Get(telemetry.MetricsPath, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "up 1\n") })
	mw, err := telemetry.HTTPMetrics(meter)
	if err != nil {
		t.Fatal(err)
	}
	h := mw(r)

	for _, path := range []string{"/v1/things/1", "/v1/things/2", "/nope", "/limited", "/silent", "/metrics"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, path, nil))
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	// The scrape is not the service's traffic: no /metrics series.
	want := map[string]int64{
		"/v1/things/{id} GET 418": 2,
		"unmatched GET 404":       1,
		"/limited GET 429":        1,
		"/silent GET 200":         1,
	}
	for _, name := range []string{"orderflow.http.requests", "orderflow.http.request.duration"} {
		got := points(t, rm, name)
		for k, n := range want {
			if got[k] != n {
				t.Errorf("%s[%s] = %d; want %d (all: %v)", name, k, got[k], n, got)
			}
		}
		if len(got) != len(want) {
			t.Errorf("%s has %d series; want %d: %v", name, len(got), len(want), got)
		}
	}
	inFlight := 0
	for _, n := range points(t, rm, "orderflow.http.requests.in_flight") {
		inFlight += int(n)
	}
	if inFlight != 0 {
		t.Errorf("in flight after all requests = %d; want 0", inFlight)
	}
	rejected := 0
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == "orderflow.ratelimit.rejections" {
				for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
					rejected += int(p.Value)
				}
			}
		}
	}
	if rejected != 1 {
		t.Errorf("rate-limit rejections = %d; want 1", rejected)
	}
}

// openMetricsAccept is what Prometheus sends when it prefers OpenMetrics.
const openMetricsAccept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"

// scrape GETs /metrics from h with the Accept header accept and returns
// the body and its content type.
func scrape(t *testing.T, h http.Handler, accept string) (body, contentType string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, telemetry.MetricsPath, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics = %d: %s", rec.Code, rec.Body)
	}
	return rec.Body.String(), rec.Header().Get("Content-Type")
}

// exemplarTraceIDs returns the trace ids of the exemplars on the buckets of
// the latency histogram of route, in an OpenMetrics body.
func exemplarTraceIDs(body, route string) []string {
	// orderflow_http_request_duration_seconds_bucket{…,route="…",…} 1 # {trace_id="…",span_id="…"} 6.5e-05 1.7e+09
	// A route pattern has braces of its own: the labels end at the last "} ".
	line := regexp.MustCompile(`(?m)^orderflow_http_request_duration_seconds_bucket\{(.*)\} \S+ # \{([^}]*)\} \S+`)
	traceID := regexp.MustCompile(`trace_id="([0-9a-f]{32})"`)
	var ids []string
	for _, m := range line.FindAllStringSubmatch(body, -1) {
		if !strings.Contains(m[1], `route="`+route+`"`) {
			continue
		}
		if id := traceID.FindStringSubmatch(m[2]); id != nil {
			ids = append(ids, id[1])
		}
	}
	return ids
}

// TestMetricsHandler_Exemplars: a request served under a sampled span
// leaves its trace id as an exemplar on the latency histogram's bucket, so
// a slow bucket on the dashboard links to a trace; Prometheus reads it in
// OpenMetrics, while the plain text format (the one promtool lints) stays
// without. An unsampled request leaves none: there is no trace to link to.
func TestMetricsHandler_Exemplars(t *testing.T) {
	t.Parallel()
	tel, err := telemetry.Setup(t.Context(), telemetry.Config{Service: "exemplar-test", Ratio: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	r := web.NewRouter(slog.New(slog.DiscardHandler))
	r.Get("/v1/things/{id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	r.Method(http.MethodGet, telemetry.MetricsPath, tel.MetricsHandler())
	h := tel.Middleware(r)

	// The callers' trace contexts: the server span continues each trace,
	// sampled or not as the caller decided (parent-based sampling).
	const sampled, unsampled = "4bf92f3577b34da6a3ce929d0e0e4736", "0af7651916cd43dd8448eb211c80319c"
	for path, traceparent := range map[string]string{
		"/v1/things/1": "00-" + sampled + "-00f067aa0ba902b7-01",
		"/v1/things/2": "00-" + unsampled + "-00f067aa0ba902b7-00",
	} {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("traceparent", traceparent)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusNoContent {
			t.Fatalf("GET %s = %d; want 204", path, rec.Code)
		}
	}

	body, ct := scrape(t, h, openMetricsAccept)
	if !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Fatalf("GET /metrics with Accept: %s answered %q; want OpenMetrics", openMetricsAccept, ct)
	}
	ids := exemplarTraceIDs(body, "/v1/things/{id}")
	if !slices.Contains(ids, sampled) {
		t.Errorf("no bucket of orderflow_http_request_duration_seconds{route=\"/v1/things/{id}\"} has the sampled request's trace id %s as exemplar (exemplars: %v):\n%s",
			sampled, ids, body)
	}
	if slices.Contains(ids, unsampled) {
		t.Errorf("the unsampled request's trace id %s is an exemplar; the filter must be trace-based", unsampled)
	}
	if !strings.HasSuffix(body, "# EOF\n") {
		t.Errorf("the OpenMetrics body does not end with # EOF")
	}

	text, ct := scrape(t, h, "")
	if !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("GET /metrics without Accept answered %q; want the Prometheus text format", ct)
	}
	if strings.Contains(text, sampled) || strings.Contains(text, "# {") {
		t.Errorf("the text format carries exemplars; promtool and older scrapers cannot read them")
	}
}
