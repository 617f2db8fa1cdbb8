package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/orderflow/orderflow/pkg/dbtest"
	"github.com/orderflow/orderflow/pkg/servicetest"
)

const testCSRFKey = "identity-test-csrf-key-0123456789abcdef"

// startRun runs the service with env (IDENTITY_ADDR is port 0) until the
// test ends and returns its URL; run's error is checked at the end.
func startRun(t *testing.T, env map[string]string) string {
	t.Helper()
	env["IDENTITY_ADDR"] = "127.0.0.1:0"
	env["LOG_LEVEL"] = "info"
	srv := servicetest.Start(t, func(ctx context.Context, stdout io.Writer) error {
		return run(ctx, []string{"identity"}, func(k string) string { return env[k] }, stdout, io.Discard)
	})
	return srv.URL
}

func TestRun(t *testing.T) {
	t.Parallel()
	// Hydra's admin API as far as /readyz needs it; the flow itself runs
	// against a real Hydra in TestHydraFlow.
	hydra := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health/ready" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	}))
	defer hydra.Close()
	env := map[string]string{
		"IDENTITY_DATABASE_URL":    dbtest.NewURL(t, nil), // empty: run must migrate it
		"IDENTITY_HYDRA_ADMIN_URL": hydra.URL,
		"IDENTITY_CSRF_KEY":        testCSRFKey,
		"OTEL_SDK_DISABLED":        "true",
	}
	base := startRun(t, env)

	resp, err := http.Post(base+"/v1/customers", "application/json",
		strings.NewReader(`{"email":"run@example.com","password":"correct horse","name":"Run"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || !strings.Contains(string(body), `"id":"cus_`) {
		t.Errorf("POST /v1/customers = %d %s; want 201 with a cus_ id", resp.StatusCode, body)
	}
	for path, want := range map[string]string{"/readyz": `"status":"ready"`, "/metrics": "orderflow_identity_logins_total"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s = %d, want 200 with %s; got:\n%.500s", path, resp.StatusCode, want, body)
		}
	}
}

func TestReadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{"defaults", map[string]string{"IDENTITY_CSRF_KEY": testCSRFKey}, ""},
		{"no csrf key", nil, "IDENTITY_CSRF_KEY is required"},
		{"short csrf key", map[string]string{"IDENTITY_CSRF_KEY": "short"}, "at least 32 characters"},
		{"bad hydra url", map[string]string{"IDENTITY_CSRF_KEY": testCSRFKey, "IDENTITY_HYDRA_ADMIN_URL": "4445"}, "IDENTITY_HYDRA_ADMIN_URL"},
		{"negative rate", map[string]string{"IDENTITY_CSRF_KEY": testCSRFKey, "IDENTITY_LOGIN_RATE": "-1"}, "IDENTITY_LOGIN_RATE"},
		{"rate not a number", map[string]string{"IDENTITY_CSRF_KEY": testCSRFKey, "IDENTITY_LOGIN_RATE": "many"}, "IDENTITY_LOGIN_RATE"},
		{"bad proxies", map[string]string{"IDENTITY_CSRF_KEY": testCSRFKey, "TRUSTED_PROXIES": "gateway"}, "gateway"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := readConfig([]string{"identity"}, func(k string) string { return tt.env[k] }, io.Discard)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("readConfig = %v; want nil", err)
				}
				if c.Addr != ":8084" || c.hydraAdminURL != "http://127.0.0.1:4445" || c.loginRate != 10 ||
					c.DatabaseURL != "postgres://postgres@127.0.0.1:5432/identity?sslmode=disable" ||
					c.redisURL != "redis://127.0.0.1:6379/0" {
					t.Errorf("defaults = %+v", c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("readConfig = %v; want an error mentioning %q", err, tt.wantErr)
			}
		})
	}
	// Every problem at once, not the first only.
	_, err := readConfig([]string{"identity"}, func(k string) string {
		return map[string]string{"IDENTITY_LOGIN_RATE": "-1", "IDENTITY_HYDRA_TIMEOUT": "soon"}[k]
	}, io.Discard)
	for _, want := range []string{"IDENTITY_CSRF_KEY", "IDENTITY_LOGIN_RATE", "IDENTITY_HYDRA_TIMEOUT"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("readConfig(three bad settings) = %v; want it to name %s", err, want)
		}
	}
}
