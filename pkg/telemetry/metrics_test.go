package telemetry_test

import (
	"bufio"
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/orderflow/orderflow/pkg/dbtest"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/redisconn"
	"github.com/orderflow/orderflow/pkg/resilience"
	"github.com/orderflow/orderflow/pkg/telemetry"
)

// servedMetrics is what GET /metrics answers, in the text format, for a
// Telemetry wired the way the services wire theirs: a traced pgx pool with
// its statistics, an instrumented Redis client, a downstream's policies,
// an observable counter and the HTTP middleware, each used once so every
// instrument has a sample.
// It also returns how long the work took, an upper bound for any time a
// metric adds up here.
func servedMetrics(t *testing.T) ([]byte, time.Duration) {
	t.Helper()
	ctx := t.Context()
	start := time.Now()
	tel, err := telemetry.Setup(ctx, telemetry.Config{Service: "telemetry-test", Ratio: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })

	pool, err := postgres.Open(ctx, dbtest.NewURL(t, nil), 2, postgres.WithTracer(tel.PgxTracer("test")))
	if err != nil {
		t.Fatalf("open the test database: %v", err)
	}
	t.Cleanup(pool.Close)
	if err := tel.ObservePool(pool, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("SELECT 1: %v", err)
	}

	rdb, err := redisconn.Open("redis://127.0.0.1:6379/0", 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	if err := tel.InstrumentRedis(rdb); err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second) // not the client's 250 ms: a busy machine
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		t.Fatalf("Redis is needed for this test and does not answer on 127.0.0.1:6379 (start it with `make deps` or `redis-server --daemonize yes`): %v", err)
	}
	// A pipeline is recorded apart from single commands.
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error { p.Ping(ctx); return nil }); err != nil {
		t.Fatalf("pipelined PING: %v", err)
	}

	d := resilience.New("downstream", resilience.DefaultPolicy(time.Second), http.DefaultTransport, slog.New(slog.DiscardHandler))
	if err := d.Instrument(tel.MeterFor("orderflow/resilience")); err != nil {
		t.Fatal(err)
	}
	if _, err := tel.MeterFor("orderflow/test").Int64ObservableCounter("orderflow.test.requests",
		metric.WithDescription("Test reads by result."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(1, metric.WithAttributes(attribute.String("result", "hit")))
			return nil
		})); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+telemetry.MetricsPath, tel.MetricsHandler())
	h := tel.Middleware(mux)
	// A sampled request: its exemplar must not reach the text format.
	req := httptest.NewRequest(http.MethodGet, "/nothing", nil)
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	h.ServeHTTP(httptest.NewRecorder(), req)
	took := time.Since(start)

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics = %d", rec.Code)
	}
	return rec.Body.Bytes(), took
}

// samples sums the values of each series name in a Prometheus text body.
func samples(body []byte) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		name := line[:i]
		if j := strings.IndexByte(name, '{'); j >= 0 {
			name = name[:j]
		}
		out[name] += v
	}
	return out
}

// TestMetricsHandler_PromtoolClean runs `promtool check metrics`, the
// linter Prometheus ships, on what /metrics serves, and fails on any
// problem it reports: a time in milliseconds or nanoseconds instead of
// seconds, a counter without _total, a metric without help.
func TestMetricsHandler_PromtoolClean(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is missing: sudo apt-get install prometheus (scripts/test.sh installs it)")
	}
	body, took := servedMetrics(t)

	cmd := exec.CommandContext(t.Context(), promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics on /metrics: %v\n%s", err, out)
	}

	// The times the libraries record in ms and ns are served in seconds,
	// converted, not merely renamed: no total exceeds the time the work took.
	got := samples(body)
	for _, name := range []string{
		"pgxpool_acquire_duration_seconds_total",
		"pgxpool_empty_acquire_wait_time_seconds_total",
		"db_client_connections_waits_duration_seconds_total",
		"db_client_connections_create_time_seconds_sum",
		"db_client_connections_use_time_seconds_sum",
		"db_client_operation_duration_seconds_sum",
	} {
		v, ok := got[name]
		switch {
		case !ok:
			t.Errorf("/metrics has no %s", name)
		case v < 0 || v > took.Seconds():
			t.Errorf("%s = %v; want between 0 and %v, the time the work took", name, v, took.Seconds())
		}
	}
	for _, name := range []string{
		"pgxpool_acquires_total",
		"db_client_connections_create_time_seconds_count",
		"db_client_connections_use_time_seconds_count",
		"db_client_connections_misses_total", // the first command finds the pool empty
		"orderflow_http_requests_total",
	} {
		if got[name] < 1 {
			t.Errorf("%s = %v; want >= 1 after the work", name, got[name])
		}
	}
}
