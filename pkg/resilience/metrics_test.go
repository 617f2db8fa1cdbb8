package resilience

import (
	"net/http"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// TestDownstream_Instrument: two downstreams on one meter each add their
// own series, and the breaker state and rejections read what the policies
// did.
func TestDownstream_Instrument(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	srv.status.Store(http.StatusServiceUnavailable)
	failing := New("failing", testPolicy(), nil, nil)
	healthy := New("healthy", testPolicy(), nil, nil)
	reader := sdkmetric.NewManualReader()
	meter := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test")
	for _, d := range []*Downstream{failing, healthy} {
		if err := d.Instrument(meter); err != nil {
			t.Fatal(err)
		}
	}
	// POSTs are not retried: three failures of five open the breaker, the
	// next call is rejected without being sent.
	for range 4 {
		_, _ = call(t, failing, t.Context(), http.MethodPost, srv.URL)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{} // "metric downstream reason" → value
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			var pts []metricdata.DataPoint[int64]
			switch d := m.Data.(type) {
			case metricdata.Gauge[int64]:
				pts = d.DataPoints
			case metricdata.Sum[int64]:
				pts = d.DataPoints
			}
			for _, p := range pts {
				ds, _ := p.Attributes.Value("downstream")
				reason, _ := p.Attributes.Value("reason")
				got[m.Name+" "+ds.AsString()+" "+reason.AsString()] = p.Value
			}
		}
	}
	want := map[string]int64{
		"orderflow.breaker.state failing ":                      1, // open
		"orderflow.breaker.state healthy ":                      0,
		"orderflow.downstream.retries failing ":                 0,
		"orderflow.downstream.retries healthy ":                 0,
		"orderflow.downstream.rejections failing breaker_open":  1,
		"orderflow.downstream.rejections failing bulkhead_full": 0,
		"orderflow.downstream.rejections healthy breaker_open":  0,
		"orderflow.downstream.rejections healthy bulkhead_full": 0,
	}
	for k, v := range want {
		if n, ok := got[k]; !ok || n != v {
			t.Errorf("%s = %d (present %v); want %d", k, n, ok, v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d series; want %d: %v", len(got), len(want), got)
	}
}
