package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/orderflow/orderflow/pkg/dbtest"
	"github.com/orderflow/orderflow/pkg/servicetest"
)

func TestRun(t *testing.T) {
	// An empty database: run must migrate it itself.
	env := map[string]string{"PROVIDER_ADDR": "127.0.0.1:0", "PROVIDER_API_KEY": "secret", "LOG_LEVEL": "info",
		"PROVIDER_DATABASE_URL": dbtest.NewURL(t, nil), "PROVIDER_DB_MAX_CONNS": "2"}
	srv := servicetest.Start(t, func(ctx context.Context, stdout io.Writer) error {
		return run(ctx, []string{"provider"}, func(k string) string { return env[k] }, stdout, io.Discard)
	})
	base := srv.URL

	req, _ := http.NewRequest("POST", base+"/v1/charges",
		strings.NewReader(`{"amount_cents":500,"currency":"USD","method":"pm_card_ok"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer secret")
	req.Header.Set("Idempotency-Key", "e2e")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || !strings.Contains(string(body), `"status":"succeeded"`) {
		t.Errorf("POST /v1/charges = %d %s; want 201 succeeded", resp.StatusCode, body)
	}
	totals, _ := http.NewRequest("GET", base+"/admin/totals", nil)
	totals.Header.Set("Authorization", "Bearer secret")
	resp, err = http.DefaultClient.Do(totals)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"captured_cents":500`) {
		t.Errorf("GET /admin/totals = %d %s; want 200 with captured_cents 500", resp.StatusCode, body)
	}
	if resp, err := http.Get(base + "/readyz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("GET /readyz = %v, %v; want 200", resp, err)
	} else {
		resp.Body.Close()
	}
	// The scrape needs no API key.
	if metrics := srv.Scrape(t); !strings.Contains(metrics, `orderflow_http_requests_total{method="POST",route="/v1/charges",status="201"}`) {
		t.Errorf("GET /metrics has no orderflow_http_requests_total of POST /v1/charges:\n%s", metrics)
	}

	if err := srv.Stop(t); err != nil {
		t.Errorf("run = %v; want nil", err)
	}
}

func TestReadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr []string
	}{
		{name: "defaults"},
		{name: "valid", env: map[string]string{"PROVIDER_LATENCY_MS": "100", "PROVIDER_ERROR_RATE": "0.5", "PROVIDER_OUTAGE": "true"}},
		{name: "latency too high", env: map[string]string{"PROVIDER_LATENCY_MS": "60001"}, wantErr: []string{"PROVIDER_LATENCY_MS must be between"}},
		{name: "error rate too high", env: map[string]string{"PROVIDER_ERROR_RATE": "2"}, wantErr: []string{"PROVIDER_ERROR_RATE must be between"}},
		{name: "not a bool", env: map[string]string{"PROVIDER_OUTAGE": "maybe"}, wantErr: []string{"PROVIDER_OUTAGE"}},
		{name: "bad conns", env: map[string]string{"PROVIDER_DB_MAX_CONNS": "many"}, wantErr: []string{"PROVIDER_DB_MAX_CONNS"}},
		// Every bad setting is reported at once.
		{name: "all errors", env: map[string]string{"PROVIDER_LATENCY_MS": "-1", "PROVIDER_ERROR_RATE": "2", "PROVIDER_DB_MAX_CONNS": "0"},
			wantErr: []string{"PROVIDER_LATENCY_MS", "PROVIDER_ERROR_RATE", "PROVIDER_DB_MAX_CONNS must be at least 1"}},
		{name: "unknown flag", args: []string{"provider", "-nope"}, wantErr: []string{"nope"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := readConfig(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			for _, want := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("readConfig() = %v; want an error containing %q", err, want)
				}
			}
			if len(tt.wantErr) == 0 && err != nil {
				t.Fatalf("readConfig() = %v; want nil", err)
			}
			if tt.name == "defaults" && c.Addr != ":8090" {
				t.Errorf("default addr = %q; want :8090", c.Addr)
			}
		})
	}
}

// TestConfig_LogValue: the start-up log shows no secret.
func TestConfig_LogValue(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"PROVIDER_DATABASE_URL": "postgres://u:dbsecret@db/provider", "PROVIDER_API_KEY": "apisecret"}
	c, err := readConfig(nil, func(k string) string { return vars[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	servicetest.CheckLogHides(t, c, "dbsecret", "apisecret")
}
