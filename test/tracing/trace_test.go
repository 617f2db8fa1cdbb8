package tracing

import (
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/orderflow/orderflow/pkg/telemetry/otlptest"
)

// TestOneTracePerOrder places one order and follows it: the spans of order,
// inventory, payment, the provider, the outbox relay and both notification
// workers all carry the trace id of the POST /v1/orders request, each with
// its parent in the same trace, and the services' log lines for it carry
// the same trace id.
func TestOneTracePerOrder(t *testing.T) {
	t.Parallel()
	recv, err := otlptest.Start(true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { recv.Close() })
	s := startStack(t, recv, nil)
	token := customerToken(t)

	status, body := placeOrder(t, s, token, "SKU-00001", 1, "pm_card_ok")
	if status != http.StatusCreated {
		t.Fatalf("POST /v1/orders = %d %v; want 201", status, body)
	}
	if body["customer_id"] != customer {
		t.Errorf("order customer_id = %v; want %s, the token's subject", body["customer_id"], customer)
	}
	id := body["id"].(string)
	notified(t, s, token, id)

	// The root: order's server span of the POST.
	var root otlptest.Span
	eventually(t, 15*time.Second, "order's POST /v1/orders server span", func() bool {
		for _, sp := range recv.Spans() {
			if sp.Service == "order" && sp.Name == "POST /v1/orders" && sp.Kind == tracepb.Span_SPAN_KIND_SERVER {
				root = sp
				return true
			}
		}
		return false
	})
	if root.ParentID != "" {
		t.Errorf("POST /v1/orders has a parent %s; want a root span", root.ParentID)
	}

	type want struct {
		service, name string
		kind          tracepb.Span_SpanKind
	}
	wants := []want{
		{"order", "POST /v1/orders", tracepb.Span_SPAN_KIND_SERVER},
		{"order", "POST 127.0.0.1", tracepb.Span_SPAN_KIND_CLIENT}, // prefix: the downstream calls
		{"inventory", "POST /v1/reservations", tracepb.Span_SPAN_KIND_SERVER},
		{"inventory", "POST /v1/reservations/{order_id}/commit", tracepb.Span_SPAN_KIND_SERVER},
		{"payment", "POST /v1/payments", tracepb.Span_SPAN_KIND_SERVER},
		{"provider", "POST /v1/charges", tracepb.Span_SPAN_KIND_SERVER},
		{"order", "create " + s.Queues[0], tracepb.Span_SPAN_KIND_PRODUCER},
		{"order", "create " + s.Queues[1], tracepb.Span_SPAN_KIND_PRODUCER},
		{"notification", "process " + s.Queues[0], tracepb.Span_SPAN_KIND_CONSUMER},
		{"notification", "process " + s.Queues[1], tracepb.Span_SPAN_KIND_CONSUMER},
	}
	// Spans arrive in batches once a second; wait for the last ones.
	var inTrace []otlptest.Span
	missing := func() []want {
		inTrace = inTrace[:0]
		for _, sp := range recv.Spans() {
			if sp.TraceID == root.TraceID {
				inTrace = append(inTrace, sp)
			}
		}
		var miss []want
		for _, w := range wants {
			if !slices.ContainsFunc(inTrace, func(sp otlptest.Span) bool {
				return sp.Service == w.service && sp.Kind == w.kind && strings.HasPrefix(sp.Name, w.name)
			}) {
				miss = append(miss, w)
			}
		}
		return miss
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(missing()) > 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if miss := missing(); len(miss) > 0 {
		var names []string
		for _, sp := range recv.Spans() {
			names = append(names, sp.Service+"/"+sp.Name+"@"+sp.TraceID[:8])
		}
		t.Fatalf("spans missing from trace %s: %v\nall spans: %v", root.TraceID, miss, names)
	}

	// Every span of the trace hangs off another span of it: no orphan
	// whose parent was lost at a process or queue boundary.
	ids := map[string]bool{}
	for _, sp := range inTrace {
		ids[sp.SpanID] = true
	}
	for _, sp := range inTrace {
		if sp.ParentID != "" && !ids[sp.ParentID] {
			t.Errorf("span %s/%s has parent %s, which is not in the trace", sp.Service, sp.Name, sp.ParentID)
		}
	}
	// The database is traced under the requests too.
	if !slices.ContainsFunc(inTrace, func(sp otlptest.Span) bool {
		return sp.Service == "notification" && sp.Attrs["db.system.name"] == "postgresql"
	}) {
		t.Errorf("no postgresql span of notification in the trace")
	}
	// Probes are not traced.
	for _, sp := range recv.Spans() {
		if strings.Contains(sp.Name, "/healthz") || strings.Contains(sp.Name, "/readyz") || strings.Contains(sp.Name, "/metrics") {
			t.Errorf("probe traced: %s/%s", sp.Service, sp.Name)
		}
	}

	// Logs under the request carry its trace id.
	for _, name := range []string{"order", "inventory", "payment", "provider"} {
		b, err := os.ReadFile(s.LogPath(name))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), `"trace_id":"`+root.TraceID+`"`) {
			t.Errorf("%s log has no line with trace_id %s", name, root.TraceID)
		}
	}
}
