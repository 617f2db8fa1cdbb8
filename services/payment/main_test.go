package main

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/pkg/authtest"
	"github.com/orderflow/orderflow/pkg/dbtest"
	"github.com/orderflow/orderflow/pkg/servicetest"
	"github.com/orderflow/orderflow/pkg/web"
	"github.com/orderflow/orderflow/services/payment/internal/provider"
)

func TestRun(t *testing.T) {
	// An empty database: run must migrate it itself.
	dbURL := dbtest.NewURL(t, nil)
	provFS, err := migrations.For("provider")
	if err != nil {
		t.Fatal(err)
	}
	provStore := provider.NewStore(dbtest.NewPool(t, provFS))
	sim := provider.NewSimulator(provider.Config{}, provStore)
	prov := httptest.NewServer(provider.NewHandler(slog.New(slog.DiscardHandler), sim,
		map[string]web.Check{"postgres": provStore.Ping}, nil, "secret"))
	defer prov.Close()

	hydra := authtest.Start(t, authtest.Options{})
	token, err := hydra.ClientToken(context.Background(), "orderflow-order", authtest.OrderSecret, "payments")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"PAYMENT_ADDR":               "127.0.0.1:0",
		"PAYMENT_DATABASE_URL":       dbURL,
		"PAYMENT_DB_MAX_CONNS":       "4",
		"PAYMENT_PROVIDER_URL":       prov.URL,
		"PAYMENT_PROVIDER_TIMEOUT":   "2s",
		"PAYMENT_PROVIDER_API_KEY":   "secret",
		"PAYMENT_RECONCILE_INTERVAL": "100ms",
		"AUTH_ISSUER":                hydra.Issuer,
		"LOG_LEVEL":                  "info",
	}
	srv := servicetest.Start(t, func(ctx context.Context, stdout io.Writer) error {
		return run(ctx, []string{"payment"}, func(k string) string { return env[k] }, stdout, io.Discard)
	})
	base := srv.URL

	capture := func(authorization string) (*http.Response, []byte) {
		req, _ := http.NewRequest("POST", base+"/v1/payments", strings.NewReader(
			`{"order_id":"0190a5a4-7b8e-7c3d-9f00-1234567890ab","amount_cents":1999,"currency":"USD","method":"pm_card_ok"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "e2e-1")
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, body
	}
	// A real token from a real Hydra: checked against its JWKS.
	if resp, body := capture(""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST /v1/payments without a token = %d %s; want 401", resp.StatusCode, body)
	}
	resp, body := capture("Bearer " + token)
	if resp.StatusCode != http.StatusCreated || !strings.Contains(string(body), `"status":"captured"`) {
		t.Errorf("POST /v1/payments = %d %s; want 201 captured", resp.StatusCode, body)
	}
	if tot, err := sim.Totals(context.Background()); err != nil || tot.Charges != 1 {
		t.Errorf("provider charges = %+v, %v; want 1", tot, err)
	}
	if resp, err := http.Get(base + "/readyz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("GET /readyz = %v, %v; want 200", resp, err)
	} else {
		resp.Body.Close()
	}
	// The reconciler's outcomes and the provider's policies are exported
	// beside the HTTP metrics.
	metrics := srv.Scrape(t)
	for _, series := range []string{`orderflow_payment_intents_settled_total{outcome="abandoned"`,
		`orderflow_breaker_state{downstream="provider"`, `orderflow_http_requests_total{`} {
		if !strings.Contains(metrics, "\n"+series) {
			t.Errorf("GET /metrics has no %s...}", series)
		}
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
		{name: "bad timeout", env: map[string]string{"PAYMENT_PROVIDER_TIMEOUT": "soon"}, wantErr: []string{"PAYMENT_PROVIDER_TIMEOUT"}},
		{name: "zero timeout", env: map[string]string{"PAYMENT_PROVIDER_TIMEOUT": "0s"}, wantErr: []string{"PAYMENT_PROVIDER_TIMEOUT must be positive"}},
		{name: "bad conns", env: map[string]string{"PAYMENT_DB_MAX_CONNS": "many"}, wantErr: []string{"PAYMENT_DB_MAX_CONNS"}},
		{name: "zero reconcile interval", env: map[string]string{"PAYMENT_RECONCILE_INTERVAL": "0s"}, wantErr: []string{"PAYMENT_RECONCILE_INTERVAL must be positive"}},
		// 3 attempts of 1s with backoffs (3.6s): a grace of 3s could abandon
		// an intent whose charge is still on its way.
		{name: "grace shorter than a provider call", env: map[string]string{"PAYMENT_RECONCILE_AFTER": "3s"}, wantErr: []string{"PAYMENT_RECONCILE_AFTER (3s)"}},
		{name: "grace longer than a provider call", env: map[string]string{"PAYMENT_RECONCILE_AFTER": "5s"}},
		// Budgets nest: 3 × 4s + backoffs does not fit a 10s request.
		{name: "provider call longer than the request", env: map[string]string{"PAYMENT_PROVIDER_TIMEOUT": "4s"}, wantErr: []string{"must fit inside a payment request"}},
		{name: "fewer retries fit", env: map[string]string{"PAYMENT_PROVIDER_TIMEOUT": "4s", "PAYMENT_RETRY_MAX": "1"}},
		// Every bad setting is reported at once.
		{name: "all errors", env: map[string]string{"PAYMENT_DB_MAX_CONNS": "0", "PAYMENT_RECONCILE_INTERVAL": "0s", "TRUSTED_PROXIES": "nope"},
			wantErr: []string{"PAYMENT_DB_MAX_CONNS must be at least 1", "PAYMENT_RECONCILE_INTERVAL must be positive", "nope"}},
		{name: "addr flag", args: []string{"payment", "-addr", "127.0.0.1:9999"}},
		{name: "unknown flag", args: []string{"payment", "-nope"}, wantErr: []string{"nope"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars := maps.Clone(tt.env)
			c, err := readConfig(tt.args, func(k string) string { return vars[k] }, io.Discard)
			for _, want := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("readConfig() = %v; want an error containing %q", err, want)
				}
			}
			if len(tt.wantErr) == 0 && err != nil {
				t.Fatalf("readConfig() = %v; want nil", err)
			}
			if tt.name == "defaults" && (c.Addr != ":8082" || c.providerTimeout != time.Second || c.provider.Budget() >= 4*time.Second) {
				t.Errorf("defaults = %+v", c)
			}
			if tt.name == "addr flag" && c.Addr != "127.0.0.1:9999" {
				t.Errorf("addr = %q; want the flag's 127.0.0.1:9999", c.Addr)
			}
		})
	}
}

// TestConfig_LogValue: the start-up log shows no secret.
func TestConfig_LogValue(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"PAYMENT_DATABASE_URL": "postgres://u:dbsecret@db/payments", "PAYMENT_PROVIDER_API_KEY": "apisecret"}
	c, err := readConfig(nil, func(k string) string { return vars[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if line := servicetest.CheckLogHides(t, c, "dbsecret", "apisecret"); !strings.Contains(line, `"provider_api_key":"***"`) {
		t.Errorf("start-up log %s does not say the provider API key is set", line)
	}
}
