package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/pkg/authtest"
	"github.com/orderflow/orderflow/pkg/dbtest"
	"github.com/orderflow/orderflow/services/payment/internal/provider"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestRun(t *testing.T) {
	// An empty database: run must migrate it itself.
	dbURL := dbtest.NewURL(t, nil)
	provFS, err := migrations.For("provider")
	if err != nil {
		t.Fatal(err)
	}
	sim := provider.NewSimulator(provider.Config{}, provider.NewStore(dbtest.NewPool(t, provFS)))
	prov := httptest.NewServer(provider.NewHandler(slog.New(slog.DiscardHandler), sim, "secret"))
	defer prov.Close()

	hydra := authtest.Start(t, authtest.Options{})
	token, err := hydra.ClientToken(context.Background(), "orderflow-order", authtest.OrderSecret, "payments")
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	env := map[string]string{
		"PAYMENT_ADDR":               addr,
		"PAYMENT_DATABASE_URL":       dbURL,
		"PAYMENT_DB_MAX_CONNS":       "4",
		"PAYMENT_PROVIDER_URL":       prov.URL,
		"PAYMENT_PROVIDER_TIMEOUT":   "2s",
		"PAYMENT_PROVIDER_API_KEY":   "secret",
		"PAYMENT_RECONCILE_INTERVAL": "100ms",
		"AUTH_ISSUER":                hydra.Issuer,
		"LOG_LEVEL":                  "warn",
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, nil, func(k string) string { return env[k] }, io.Discard, io.Discard) }()

	base := "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-errc:
			t.Fatalf("run returned early: %v", err)
		default:
		}
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("payment never became healthy")
		}
		time.Sleep(20 * time.Millisecond)
	}

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
	// The reconciler's outcomes are exported.
	if resp, err := http.Get(base + "/metrics"); err != nil {
		t.Errorf("GET /metrics: %v", err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), `orderflow_payment_intents_settled_total{outcome="abandoned"`) {
			t.Errorf("GET /metrics has no orderflow_payment_intents_settled_total{outcome=...}")
		}
	}

	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("run = %v; want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

func TestReadConfig(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr bool
	}{
		{"defaults", nil, false},
		{"bad timeout", map[string]string{"PAYMENT_PROVIDER_TIMEOUT": "soon"}, true},
		{"zero timeout", map[string]string{"PAYMENT_PROVIDER_TIMEOUT": "0s"}, true},
		{"bad conns", map[string]string{"PAYMENT_DB_MAX_CONNS": "many"}, true},
		{"zero reconcile interval", map[string]string{"PAYMENT_RECONCILE_INTERVAL": "0s"}, true},
		// 3 attempts of 1s with backoffs (3.6s): a grace of 3s could abandon
		// an intent whose charge is still on its way.
		{"grace shorter than a provider call", map[string]string{"PAYMENT_RECONCILE_AFTER": "3s"}, true},
		{"grace longer than a provider call", map[string]string{"PAYMENT_RECONCILE_AFTER": "5s"}, false},
		// Budgets nest: 3 × 4s + backoffs does not fit a 10s request.
		{"provider call longer than the request", map[string]string{"PAYMENT_PROVIDER_TIMEOUT": "4s"}, true},
		{"fewer retries fit", map[string]string{"PAYMENT_PROVIDER_TIMEOUT": "4s", "PAYMENT_RETRY_MAX": "1"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := readConfig(func(k string) string { return tt.env[k] })
			if (err != nil) != tt.wantErr {
				t.Errorf("readConfig() error = %v; want error %v", err, tt.wantErr)
			}
			if tt.env == nil && (c.addr != ":8082" || c.providerTimeout != time.Second || c.provider.Budget() >= 4*time.Second) {
				t.Errorf("defaults = %+v", c)
			}
		})
	}
}
