package web_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

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

func TestMetrics_LabelsWithTheRoutePattern(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	meter := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test")
	r := web.NewRouter(slog.New(slog.NewTextHandler(io.Discard, nil)))
	r.Get("/v1/things/{id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	r.Get("/limited", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTooManyRequests) })
	r.Get("/silent", func(w http.ResponseWriter, r *http.Request) {})
	h := web.Metrics(meter)(r)

	for _, path := range []string{"/v1/things/1", "/v1/things/2", "/nope", "/limited", "/silent"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, path, nil))
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
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
