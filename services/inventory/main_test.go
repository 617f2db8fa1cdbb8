package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/pkg/dbtest"
	"github.com/orderflow/orderflow/pkg/servicetest"
)

func TestRun(t *testing.T) {
	// run migrates the empty database itself.
	dbURL := dbtest.NewURL(t, nil)
	vars := map[string]string{
		"INVENTORY_ADDR":           "127.0.0.1:0",
		"INVENTORY_DATABASE_URL":   dbURL,
		"INVENTORY_DB_MAX_CONNS":   "4",
		"INVENTORY_SEED_PRODUCTS":  "50",
		"INVENTORY_SWEEP_INTERVAL": "50ms",
		"INVENTORY_CACHE_PREFIX":   "test-run-" + strings.TrimPrefix(dbURL[strings.LastIndex(dbURL, "/")+1:], "orderflow_test_") + ":",
		"LOG_LEVEL":                "info",
	}
	getenv := func(k string) string { return vars[k] }

	srv := servicetest.Start(t, func(ctx context.Context, stdout io.Writer) error {
		return run(ctx, []string{"inventory"}, getenv, stdout, io.Discard)
	})
	base := srv.URL
	client := &http.Client{Timeout: 2 * time.Second}

	for _, wantCache := range []string{"MISS", "HIT"} {
		resp, err := client.Get(base + "/v1/products/SKU-00050")
		if err != nil {
			t.Fatalf("GET product: %v", err)
		}
		var p struct {
			SKU       string `json:"sku"`
			Available int    `json:"available"`
		}
		err = json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || p.SKU != "SKU-00050" || p.Available != 1_000_000 {
			t.Fatalf("GET product = %d %+v, %v; want 200 SKU-00050 with 1000000", resp.StatusCode, p, err)
		}
		if got := resp.Header.Get("X-Cache"); got != wantCache {
			t.Errorf("X-Cache = %q; want %q (Redis must be up: start it with `make deps`)", got, wantCache)
		}
		if resp.Header.Get("RateLimit-Limit") != "200" {
			t.Errorf("RateLimit-Limit = %q; want 200 (the default burst)", resp.Header.Get("RateLimit-Limit"))
		}
	}
	resp, err := client.Get(base + "/readyz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /readyz = %v, %v; want 200", resp, err)
	}
	resp.Body.Close()
	checkMetrics(t, client, base)

	if err := srv.Stop(t); err != nil {
		t.Fatalf("run = %v; want nil after cancel", err)
	}
}

// checkMetrics scrapes the running service: the Prometheus text format
// must pass `promtool check metrics` with nothing to report, and a product
// read under a sampled trace must show as an exemplar carrying its trace id
// on the latency histogram in OpenMetrics, the format Prometheus asks for.
func checkMetrics(t *testing.T, client *http.Client, base string) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is missing: sudo apt-get install prometheus (scripts/test.sh installs it)")
	}
	get := func(path string, header map[string]string) (string, http.Header) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s = %d, %v; want 200", path, resp.StatusCode, err)
		}
		return string(body), resp.Header
	}

	text, _ := get("/metrics", nil)
	for _, name := range []string{"orderflow_http_request_duration_seconds_bucket", "orderflow_cache_requests_total",
		"orderflow_ratelimit_fail_open_total", "db_client_operation_duration_seconds_bucket"} {
		if !strings.Contains(text, "\n"+name) {
			t.Errorf("/metrics has no %s", name)
		}
	}
	if strings.Contains(text, `route="/metrics"`) {
		t.Errorf("/metrics counts its own scrapes as HTTP requests")
	}
	cmd := exec.CommandContext(t.Context(), promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics on inventory's /metrics: %v\n%s", err, out)
	}

	const traceID = "5b8efff798038103d269b633813fc60c"
	get("/v1/products/SKU-00049", map[string]string{"traceparent": "00-" + traceID + "-eee19b7ec3c1b174-01"})
	om, hdr := get("/metrics", map[string]string{"Accept": "application/openmetrics-text;version=1.0.0"})
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Fatalf("GET /metrics asking for OpenMetrics answered %q", ct)
	}
	found := false
	for _, line := range strings.Split(om, "\n") {
		series, exemplar, ok := strings.Cut(line, " # {")
		if ok && strings.HasPrefix(series, "orderflow_http_request_duration_seconds_bucket{") &&
			strings.Contains(series, `route="/v1/products/{sku}"`) && strings.Contains(exemplar, `trace_id="`+traceID+`"`) {
			found = true
		}
	}
	if !found {
		t.Errorf("no bucket of orderflow_http_request_duration_seconds{route=\"/v1/products/{sku}\"} has exemplar trace_id %s:\n%s", traceID, om)
	}
}

func TestReadConfig(t *testing.T) {
	tests := []struct {
		name    string
		vars    map[string]string
		wantErr bool
	}{
		{name: "defaults", vars: map[string]string{}},
		{name: "bad duration", vars: map[string]string{"INVENTORY_RESERVATION_TTL": "soon"}, wantErr: true},
		{name: "zero ttl", vars: map[string]string{"INVENTORY_RESERVATION_TTL": "0s"}, wantErr: true},
		{name: "negative seed", vars: map[string]string{"INVENTORY_SEED_PRODUCTS": "-1"}, wantErr: true},
		{name: "bad conns", vars: map[string]string{"INVENTORY_DB_MAX_CONNS": "x"}, wantErr: true},
		{name: "cache off, no limit", vars: map[string]string{"INVENTORY_CACHE_ENABLED": "false", "INVENTORY_RATE_LIMIT": "0"}},
		{name: "bad redis url", vars: map[string]string{"INVENTORY_REDIS_URL": "http://x"}, wantErr: true},
		{name: "bad cache switch", vars: map[string]string{"INVENTORY_CACHE_ENABLED": "maybe"}, wantErr: true},
		{name: "tiny cache ttl", vars: map[string]string{"INVENTORY_CACHE_TTL": "10ms"}, wantErr: true},
		{name: "negative rate", vars: map[string]string{"INVENTORY_RATE_LIMIT": "-1"}, wantErr: true},
		{name: "negative redis pool", vars: map[string]string{"INVENTORY_REDIS_POOL_SIZE": "-1"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readConfig([]string{"inventory"}, func(k string) string { return tt.vars[k] }, io.Discard)
			if (err != nil) != tt.wantErr {
				t.Errorf("readConfig = %v; wantErr %v", err, tt.wantErr)
			}
		})
	}
}
