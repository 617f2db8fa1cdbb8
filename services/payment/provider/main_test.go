package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/pkg/dbtest"
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

func waitHealthy(t *testing.T, base string, errc <-chan error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-errc:
			t.Fatalf("run returned early: %v", err)
		default:
		}
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("provider never became healthy")
}

func TestRun(t *testing.T) {
	addr := freeAddr(t)
	// An empty database: run must migrate it itself.
	env := map[string]string{"PROVIDER_ADDR": addr, "PROVIDER_API_KEY": "secret", "LOG_LEVEL": "warn",
		"PROVIDER_DATABASE_URL": dbtest.NewURL(t, nil), "PROVIDER_DB_MAX_CONNS": "2"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, nil, func(k string) string { return env[k] }, io.Discard, io.Discard) }()
	base := "http://" + addr
	waitHealthy(t, base, errc)

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
		{"valid", map[string]string{"PROVIDER_LATENCY_MS": "100", "PROVIDER_ERROR_RATE": "0.5", "PROVIDER_OUTAGE": "true"}, false},
		{"latency too high", map[string]string{"PROVIDER_LATENCY_MS": "60001"}, true},
		{"error rate too high", map[string]string{"PROVIDER_ERROR_RATE": "2"}, true},
		{"not a bool", map[string]string{"PROVIDER_OUTAGE": "maybe"}, true},
		{"bad conns", map[string]string{"PROVIDER_DB_MAX_CONNS": "many"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readConfig(func(k string) string { return tt.env[k] })
			if (err != nil) != tt.wantErr {
				t.Errorf("readConfig() error = %v; want error %v", err, tt.wantErr)
			}
		})
	}
}
