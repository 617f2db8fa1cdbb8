package tracing

import (
	"bufio"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/pkg/telemetry/otlptest"
	"github.com/orderflow/orderflow/test/stack"
)

// sample is one line of the Prometheus text format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

var labelRE = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)

// scrape reads GET /metrics of service name.
func scrape(t *testing.T, s *stack.Stack, name string) []sample {
	t.Helper()
	resp, err := http.Get(s.URL(name, "/metrics"))
	if err != nil {
		t.Fatalf("GET %s /metrics: %v", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s /metrics = %d", name, resp.StatusCode)
	}
	var out []sample
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad metric line %q", line)
		}
		series := line[:i]
		sm := sample{name: series, labels: map[string]string{}, value: v}
		if j := strings.IndexByte(series, '{'); j >= 0 {
			sm.name = series[:j]
			for _, m := range labelRE.FindAllStringSubmatch(series[j:], -1) {
				sm.labels[m[1]] = m[2]
			}
		}
		out = append(out, sm)
	}
	return out
}

// sum adds the samples named name whose labels include want.
func sum(samples []sample, name string, want map[string]string) (float64, bool) {
	total, found := 0.0, false
	for _, sm := range samples {
		if sm.name != name {
			continue
		}
		ok := true
		for k, v := range want {
			if sm.labels[k] != v {
				ok = false
			}
		}
		if ok {
			total += sm.value
			found = true
		}
	}
	return total, found
}

// TestMetrics puts a short, mixed load on the stack and checks that every
// metric the dashboard reads is on /metrics with sane values.
func TestMetrics(t *testing.T) {
	t.Parallel()
	recv, err := otlptest.Start(false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { recv.Close() })
	// A low rate limit, so the load also produces 429s.
	s := startStack(t, recv, map[string][]string{
		"inventory": {"INVENTORY_RATE_LIMIT=5", "INVENTORY_RATE_BURST=5"},
	})

	token, admin := customerToken(t), adminToken(t)
	const confirmed = 5
	var ids []string
	for range confirmed {
		status, body := placeOrder(t, s, token, "SKU-00003", 1, "pm_card_ok")
		if status != http.StatusCreated {
			t.Fatalf("POST /v1/orders = %d %v; want 201", status, body)
		}
		ids = append(ids, body["id"].(string))
	}
	if status, body := placeOrder(t, s, token, "SKU-00004", 1, "pm_card_declined"); status != http.StatusPaymentRequired {
		t.Fatalf("declined order = %d %v; want 402", status, body)
	}
	if status, body := call(t, http.MethodPut, s.URL("inventory", "/v1/products/SKU-00006/stock"), map[string]any{"available": 0},
		"Authorization", "Bearer "+admin); status != http.StatusOK {
		t.Fatalf("PUT stock with the admin token = %d %v; want 200", status, body)
	}
	if status, body := placeOrder(t, s, token, "SKU-00006", 1, "pm_card_ok"); status != http.StatusConflict {
		t.Fatalf("out-of-stock order = %d %v; want 409", status, body)
	}
	// Repeated reads of one product: the first misses, the rest hit, and
	// past the limit of 5 per second the limiter answers 429.
	limited := 0
	for range 20 {
		if status, _ := call(t, http.MethodGet, s.URL("inventory", "/v1/products/SKU-00007"), nil); status == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited == 0 {
		t.Fatalf("20 reads at once got no 429 with a limit of 5/s")
	}
	for i, id := range ids {
		// The customer's own documents, and (for one) an operator's view.
		if i == 0 {
			notified(t, s, admin, id)
		}
		notified(t, s, token, id)
	}

	type check struct {
		service, name string
		labels        map[string]string
		ok            func(v float64) bool
		want          string
	}
	positive := func(v float64) bool { return v > 0 }
	zero := func(v float64) bool { return v == 0 }
	atLeast := func(n float64) func(float64) bool { return func(v float64) bool { return v >= n } }
	checks := []check{
		// RED metrics of every service, by chi route.
		{"order", "orderflow_http_request_duration_seconds_count", map[string]string{"route": "/v1/orders", "method": "POST", "status": "201"}, atLeast(confirmed), ">= 5"},
		{"order", "orderflow_http_request_duration_seconds_bucket", map[string]string{"route": "/v1/orders", "le": "+Inf"}, atLeast(confirmed + 2), ">= 7"},
		{"order", "orderflow_http_requests_total", map[string]string{"route": "/v1/orders", "status": "402"}, atLeast(1), ">= 1"},
		{"order", "orderflow_http_requests_in_flight", nil, zero, "0 when idle"},
		{"inventory", "orderflow_http_requests_total", map[string]string{"route": "/v1/reservations"}, atLeast(confirmed), ">= 5"},
		{"payment", "orderflow_http_requests_total", map[string]string{"route": "/v1/payments", "status": "201"}, atLeast(confirmed), ">= 5"},
		{"provider", "orderflow_http_requests_total", map[string]string{"route": "/v1/charges"}, atLeast(confirmed), ">= 5"},
		{"notification", "orderflow_http_requests_total", map[string]string{"route": "/v1/invoices"}, positive, "> 0"},
		// Database: pool stats and query latency.
		{"order", "pgxpool_max_connections", map[string]string{"db": "orders"}, positive, "> 0"},
		{"order", "pgxpool_total_connections", map[string]string{"db": "orders"}, positive, "> 0"},
		// A scrape can catch every connection acquired (the relay polls):
		// idle may be 0, total may not.
		{"order", "pgxpool_idle_connections", map[string]string{"db": "orders"}, func(v float64) bool { return v >= 0 }, ">= 0"},
		{"order", "pgxpool_acquired_connections", map[string]string{"db": "orders"}, func(v float64) bool { return v >= 0 }, ">= 0"},
		{"inventory", "db_client_operation_duration_seconds_count", map[string]string{"db": "inventory", "pgx_operation_type": "query"}, positive, "> 0"},
		{"payment", "db_client_operation_duration_seconds_count", map[string]string{"db": "payments"}, positive, "> 0"},
		{"notification", "pgxpool_max_connections", map[string]string{"db": "notifications"}, positive, "> 0"},
		// Queues: messages handled, and drained.
		{"notification", "orderflow_messages_processed_total", map[string]string{"queue": s.Queues[0], "outcome": "ok"}, atLeast(confirmed), ">= 5"},
		{"notification", "orderflow_messages_processed_total", map[string]string{"queue": s.Queues[1], "outcome": "ok"}, atLeast(confirmed + 1), ">= 6 (confirmed + payment_failed e-mails)"},
		// Outbox and orders.
		{"order", "orderflow_outbox_lag_seconds", nil, zero, "0 after the relay caught up"},
		{"order", "orderflow_outbox_unsent", nil, zero, "0 after the relay caught up"},
		{"order", "orderflow_orders_total", map[string]string{"status": "confirmed"}, atLeast(confirmed), ">= 5"},
		{"order", "orderflow_orders_total", map[string]string{"status": "payment_failed"}, atLeast(1), ">= 1"},
		{"order", "orderflow_orders_total", map[string]string{"status": "rejected"}, atLeast(1), ">= 1"},
		{"order", "orderflow_saga_duration_seconds_count", map[string]string{"status": "confirmed"}, atLeast(confirmed), ">= 5"},
		// Resilience: breakers closed.
		{"order", "orderflow_breaker_state", map[string]string{"downstream": "inventory"}, zero, "0 (closed)"},
		{"order", "orderflow_breaker_state", map[string]string{"downstream": "payment"}, zero, "0 (closed)"},
		{"payment", "orderflow_breaker_state", map[string]string{"downstream": "provider"}, zero, "0 (closed)"},
		// Cache and rate limiting.
		{"inventory", "orderflow_cache_requests_total", map[string]string{"result": "hit"}, positive, "> 0"},
		{"inventory", "orderflow_cache_requests_total", map[string]string{"result": "miss"}, positive, "> 0"},
		{"inventory", "orderflow_ratelimit_rejections_total", nil, atLeast(float64(limited)), fmt.Sprintf(">= %d", limited)},
		{"inventory", "orderflow_ratelimit_fail_open_total", nil, zero, "0 (Redis is up)"},
	}
	// Queue depth is polled every 5 s: wait for the drained queues to show
	// 0 in both services that poll them, dead-letter queues included.
	for _, svc := range []string{"order", "notification"} {
		eventually(t, 20*time.Second, svc+" reports every queue empty", func() bool {
			samples := scrape(t, s, svc)
			for _, q := range []string{s.Queues[0], s.Queues[1], s.Queues[0] + "-dlq", s.Queues[1] + "-dlq"} {
				v, found := sum(samples, "orderflow_queue_messages", map[string]string{"queue": q})
				if !found || v != 0 {
					return false
				}
			}
			return true
		})
	}
	// The relay may still be marking the last rows: give the outbox a moment.
	eventually(t, 10*time.Second, "outbox drained", func() bool {
		v, found := sum(scrape(t, s, "order"), "orderflow_outbox_unsent", nil)
		return found && v == 0
	})
	scraped := map[string][]sample{}
	for _, c := range checks {
		if scraped[c.service] == nil {
			scraped[c.service] = scrape(t, s, c.service)
		}
		v, found := sum(scraped[c.service], c.name, c.labels)
		if !found {
			t.Errorf("%s: %s%v is missing from /metrics", c.service, c.name, c.labels)
			continue
		}
		if !c.ok(v) {
			t.Errorf("%s: %s%v = %v; want %s", c.service, c.name, c.labels, v, c.want)
		}
	}
	// The cache hit ratio rises with repeated reads.
	hits, _ := sum(scraped["inventory"], "orderflow_cache_requests_total", map[string]string{"result": "hit"})
	misses, _ := sum(scraped["inventory"], "orderflow_cache_requests_total", map[string]string{"result": "miss"})
	if hits <= misses {
		t.Errorf("cache hits %v <= misses %v after repeated reads of one product", hits, misses)
	}
	// Scrapes and probes are not in the request metrics' routes as raw paths.
	for _, sm := range scraped["order"] {
		if sm.name == "orderflow_http_requests_total" && strings.Contains(sm.labels["route"], "/v1/orders/0") {
			t.Errorf("raw path as route label: %v", sm.labels)
		}
	}
}
