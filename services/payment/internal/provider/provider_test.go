package provider

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const testToken = "secret"

func newTestServer(t *testing.T, cfg Config) (*Simulator, *httptest.Server) {
	t.Helper()
	sim := NewSimulator(cfg)
	srv := httptest.NewServer(NewHandler(slog.New(slog.DiscardHandler), sim, testToken))
	t.Cleanup(srv.Close)
	return sim, srv
}

type reply struct {
	status int
	body   map[string]any
}

func call(t *testing.T, ctx context.Context, method, url, token, body string) reply {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(b) > 0 {
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s %s: body %q is not JSON: %v", method, url, b, err)
		}
	}
	return reply{status: resp.StatusCode, body: m}
}

func charge(method, key string) string {
	return `{"amount_cents":1250,"currency":"USD","method":"` + method + `","idempotency_key":"` + key + `"}`
}

func TestCharge_Idempotent(t *testing.T) {
	t.Parallel()
	sim, srv := newTestServer(t, Config{})
	first := call(t, context.Background(), "POST", srv.URL+"/v1/charges", testToken, charge("pm_card_ok", "k1"))
	if first.status != http.StatusCreated {
		t.Fatalf("charge = %d %v; want 201", first.status, first.body)
	}
	id, _ := first.body["id"].(string)
	if !strings.HasPrefix(id, "ch_") || first.body["status"] != "succeeded" ||
		first.body["amount_cents"] != 1250.0 || first.body["currency"] != "USD" {
		t.Fatalf("charge body = %v", first.body)
	}
	again := call(t, context.Background(), "POST", srv.URL+"/v1/charges", testToken, charge("pm_card_ok", "k1"))
	if diff := cmp.Diff(first, again, cmp.AllowUnexported(reply{})); diff != "" {
		t.Errorf("repeated charge differs (-first +again):\n%s", diff)
	}
	other := call(t, context.Background(), "POST", srv.URL+"/v1/charges", testToken, charge("pm_card_ok", "k2"))
	if other.body["id"] == id {
		t.Errorf("another key returned the same charge %v", id)
	}
	if got := sim.Len(); got != 2 {
		t.Errorf("charges = %d; want 2", got)
	}

	// Concurrent requests with one key charge once.
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", srv.URL+"/v1/charges", strings.NewReader(charge("pm_card_ok", "k3")))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+testToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				t.Errorf("concurrent charge = %d", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	if got := sim.Len(); got != 3 {
		t.Errorf("charges after 20 duplicates = %d; want 3", got)
	}

	mismatch := call(t, context.Background(), "POST", srv.URL+"/v1/charges", testToken,
		`{"amount_cents":999,"currency":"USD","method":"pm_card_ok","idempotency_key":"k1"}`)
	if mismatch.status != http.StatusConflict || mismatch.body["code"] != "idempotency_key_reused" {
		t.Errorf("reused key with another amount = %d %v; want 409 idempotency_key_reused", mismatch.status, mismatch.body)
	}
}

func TestCharge_Outcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		cfg        Config
		body       string
		wantStatus int
		wantCode   string
	}{
		{"declined", Config{}, charge("pm_card_declined", "d1"), 402, "card_declined"},
		{"insufficient funds", Config{}, charge("pm_card_insufficient_funds", "d2"), 402, "insufficient_funds"},
		{"outage", Config{Outage: true}, charge("pm_card_ok", "o1"), 503, "outage"},
		{"error rate 1", Config{ErrorRate: 1}, charge("pm_card_ok", "e1"), 500, "internal"},
		{"zero amount", Config{}, `{"amount_cents":0,"currency":"USD","method":"pm_card_ok"}`, 400, "validation_failed"},
		{"bad currency", Config{}, `{"amount_cents":1,"currency":"usd1","method":"pm_card_ok"}`, 400, "validation_failed"},
		{"no method", Config{}, `{"amount_cents":1,"currency":"USD"}`, 400, "validation_failed"},
		{"unknown field", Config{}, `{"amount_cents":1,"currency":"USD","method":"x","extra":1}`, 400, "unknown_field"},
		{"bad json", Config{}, `{`, 400, "bad_json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sim, srv := newTestServer(t, tt.cfg)
			r := call(t, context.Background(), "POST", srv.URL+"/v1/charges", testToken, tt.body)
			if r.status != tt.wantStatus || r.body["code"] != tt.wantCode {
				t.Errorf("charge = %d %v; want %d %s", r.status, r.body, tt.wantStatus, tt.wantCode)
			}
			if got := sim.Len(); got != 0 {
				t.Errorf("charges = %d; want 0", got)
			}
		})
	}
}

func TestCharge_LatencyCancelledChargesNothing(t *testing.T) {
	t.Parallel()
	sim := NewSimulator(Config{LatencyMS: 60000})
	h := NewHandler(slog.New(slog.DiscardHandler), sim, testToken)
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequestWithContext(ctx, "POST", "/v1/charges", strings.NewReader(charge("pm_card_ok", "slow")))
	req.Header.Set("Authorization", "Bearer "+testToken)
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.ServeHTTP(httptest.NewRecorder(), req)
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	<-done // returns only because the cancellation ended the sleep
	if got := sim.Len(); got != 0 {
		t.Errorf("charges after a cancelled slow request = %d; want 0", got)
	}

	// With a latency the caller waits for, the charge happens.
	_, srv := newTestServer(t, Config{LatencyMS: 30})
	if r := call(t, context.Background(), "POST", srv.URL+"/v1/charges", testToken, charge("pm_card_ok", "k")); r.status != 201 {
		t.Errorf("charge with latency = %d; want 201", r.status)
	}
}

func TestRefund(t *testing.T) {
	t.Parallel()
	_, srv := newTestServer(t, Config{})
	c := call(t, context.Background(), "POST", srv.URL+"/v1/charges", testToken, charge("pm_card_ok", "r1"))
	id := c.body["id"].(string)
	for i := range 2 {
		r := call(t, context.Background(), "POST", srv.URL+"/v1/charges/"+id+"/refund", testToken, "")
		if r.status != 200 || r.body["id"] != id || r.body["status"] != "refunded" {
			t.Errorf("refund #%d = %d %v; want 200 refunded", i+1, r.status, r.body)
		}
	}
	if r := call(t, context.Background(), "GET", srv.URL+"/v1/charges/"+id, testToken, ""); r.body["status"] != "refunded" {
		t.Errorf("charge after refund = %v", r.body)
	}
	if r := call(t, context.Background(), "POST", srv.URL+"/v1/charges/ch_nope/refund", testToken, ""); r.status != 404 || r.body["code"] != "not_found" {
		t.Errorf("refund of unknown = %d %v; want 404", r.status, r.body)
	}
}

func TestAdminConfig(t *testing.T) {
	t.Parallel()
	sim, srv := newTestServer(t, Config{LatencyMS: 5})

	for _, token := range []string{"", "wrong"} {
		if r := call(t, context.Background(), "PUT", srv.URL+"/admin/config", token, `{"outage":true}`); r.status != 401 || r.body["code"] != "unauthorized" {
			t.Errorf("PUT with token %q = %d %v; want 401", token, r.status, r.body)
		}
		if r := call(t, context.Background(), "GET", srv.URL+"/admin/config", token, ""); r.status != 401 {
			t.Errorf("GET with token %q = %d; want 401", token, r.status)
		}
	}
	if got := sim.Config(); got != (Config{LatencyMS: 5}) {
		t.Fatalf("config after unauthorized calls = %+v", got)
	}

	bad := []string{
		`{"latency_ms":-1}`, `{"latency_ms":60001}`, `{"error_rate":1.5}`, `{"error_rate":-0.1}`,
		`{"outage":"yes"}`, `{"latency":5}`, `not json`,
	}
	for _, body := range bad {
		r := call(t, context.Background(), "PUT", srv.URL+"/admin/config", testToken, body)
		if r.status != 400 || r.body["code"] == nil {
			t.Errorf("PUT %s = %d %v; want 400 problem", body, r.status, r.body)
		}
	}
	if got := sim.Config(); got != (Config{LatencyMS: 5}) {
		t.Fatalf("config after bad calls = %+v", got)
	}

	r := call(t, context.Background(), "PUT", srv.URL+"/admin/config", testToken, `{"error_rate":0.25,"outage":true}`)
	want := map[string]any{"latency_ms": 5.0, "error_rate": 0.25, "outage": true}
	if r.status != 200 || !cmp.Equal(r.body, want) {
		t.Errorf("PUT = %d %v; want 200 %v", r.status, r.body, want)
	}
	if r := call(t, context.Background(), "GET", srv.URL+"/admin/config", testToken, ""); !cmp.Equal(r.body, want) {
		t.Errorf("GET = %v; want %v", r.body, want)
	}
	if r := call(t, context.Background(), "PUT", srv.URL+"/admin/config", testToken, `{"latency_ms":0,"error_rate":0,"outage":false}`); r.status != 200 {
		t.Errorf("reset = %d", r.status)
	}
	if got := sim.Config(); got != (Config{}) {
		t.Errorf("config after reset = %+v", got)
	}
}

func TestAdminConfig_NoTokenConfigured(t *testing.T) {
	t.Parallel()
	sim := NewSimulator(Config{})
	srv := httptest.NewServer(NewHandler(slog.New(slog.DiscardHandler), sim, ""))
	defer srv.Close()
	if r := call(t, context.Background(), "PUT", srv.URL+"/admin/config", "", `{"outage":true}`); r.status != 401 {
		t.Errorf("PUT without a configured token = %d; want 401", r.status)
	}
}

func TestCharge_NeedsTheAPIKey(t *testing.T) {
	t.Parallel()
	sim, srv := newTestServer(t, Config{})
	for _, token := range []string{"", "wrong"} {
		if r := call(t, context.Background(), "POST", srv.URL+"/v1/charges", token, charge("pm_card_ok", "k")); r.status != 401 {
			t.Errorf("charge with key %q = %d; want 401", token, r.status)
		}
	}
	if sim.Len() != 0 {
		t.Errorf("charges after refused calls = %d; want 0", sim.Len())
	}
}

func TestProbes(t *testing.T) {
	t.Parallel()
	_, srv := newTestServer(t, Config{Outage: true})
	for _, p := range []string{"/healthz", "/readyz"} {
		if r := call(t, context.Background(), "GET", srv.URL+p, "", ""); r.status != 200 {
			t.Errorf("GET %s = %d; want 200", p, r.status)
		}
	}
}
