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

	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/pkg/dbtest"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/web"
)

const testToken = "secret"

// newDB returns the URL of a fresh, migrated provider database.
func newDB(t *testing.T) string {
	t.Helper()
	fsys, err := migrations.For("provider")
	if err != nil {
		t.Fatal(err)
	}
	return dbtest.NewURL(t, fsys)
}

// newStore opens a pool on dbURL, closed when the test ends.
func newStore(t *testing.T, dbURL string) *Store {
	t.Helper()
	pool, err := postgres.Open(context.Background(), dbURL, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return NewStore(pool)
}

// newSim is a simulator with cfg over a store on dbURL, and its handler
// wanting apiKey, ready when that store answers.
func newSim(t *testing.T, cfg Config, dbURL, apiKey string) (*Simulator, http.Handler) {
	t.Helper()
	store := newStore(t, dbURL)
	sim := NewSimulator(cfg, store)
	return sim, NewHandler(slog.New(slog.DiscardHandler), sim, map[string]web.Check{"postgres": store.Ping}, nil, apiKey)
}

func newTestServer(t *testing.T, cfg Config) (*Simulator, *httptest.Server) {
	t.Helper()
	sim, h := newSim(t, cfg, newDB(t), testToken)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return sim, srv
}

func totals(t *testing.T, sim *Simulator) Totals {
	t.Helper()
	tot, err := sim.Totals(context.Background())
	if err != nil {
		t.Fatalf("Totals: %v", err)
	}
	return tot
}

type reply struct {
	status int
	header http.Header
	body   map[string]any
}

func call(t *testing.T, ctx context.Context, method, url, token, body string) reply {
	t.Helper()
	return callKey(t, ctx, method, url, token, "", body)
}

// callKey is call with an Idempotency-Key header (none when key is empty).
func callKey(t *testing.T, ctx context.Context, method, url, token, key, body string) reply {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
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
	return reply{status: resp.StatusCode, header: resp.Header, body: m}
}

func charge(method string) string {
	return `{"amount_cents":1250,"currency":"USD","method":"` + method + `"}`
}

// TestCharge_SameKeyTwiceChargesOnce: the Idempotency-Key header, as a real
// processor reads it, deduplicates charges.
func TestCharge_SameKeyTwiceChargesOnce(t *testing.T) {
	t.Parallel()
	sim, srv := newTestServer(t, Config{})
	ctx := context.Background()
	first := callKey(t, ctx, "POST", srv.URL+"/v1/charges", testToken, "k1", charge("pm_card_ok"))
	if first.status != http.StatusCreated || first.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("charge = %d %v (replayed %q); want a fresh 201", first.status, first.body, first.header.Get("Idempotent-Replayed"))
	}
	id, _ := first.body["id"].(string)
	if !strings.HasPrefix(id, "ch_") || first.body["status"] != "succeeded" ||
		first.body["amount_cents"] != 1250.0 || first.body["currency"] != "USD" {
		t.Fatalf("charge body = %v", first.body)
	}
	again := callKey(t, ctx, "POST", srv.URL+"/v1/charges", testToken, "k1", charge("pm_card_ok"))
	if diff := cmp.Diff(first.body, again.body); diff != "" || again.status != first.status {
		t.Errorf("repeated charge = %d, differs (-first +again):\n%s", again.status, diff)
	}
	if again.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("repeated charge has Idempotent-Replayed %q; want true", again.header.Get("Idempotent-Replayed"))
	}
	if got := totals(t, sim).Charges; got != 1 {
		t.Fatalf("charges after two POST /v1/charges with Idempotency-Key: k1 = %d; want 1", got)
	}

	other := callKey(t, ctx, "POST", srv.URL+"/v1/charges", testToken, "k2", charge("pm_card_ok"))
	if other.body["id"] == id {
		t.Errorf("another key returned the same charge %v", id)
	}
	// Without a key nothing is deduplicated.
	for range 2 {
		if r := call(t, ctx, "POST", srv.URL+"/v1/charges", testToken, charge("pm_card_ok")); r.status != 201 {
			t.Fatalf("charge without a key = %d %v", r.status, r.body)
		}
	}
	if got := totals(t, sim).Charges; got != 4 {
		t.Errorf("charges = %d; want 4", got)
	}

	// Concurrent requests with one key charge once.
	var wg sync.WaitGroup
	ids := make([]string, 20)
	for i := range ids {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", srv.URL+"/v1/charges", strings.NewReader(charge("pm_card_ok")))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+testToken)
			req.Header.Set("Idempotency-Key", "k3")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var c struct{ ID string }
			_ = json.NewDecoder(resp.Body).Decode(&c)
			if resp.StatusCode != http.StatusCreated {
				t.Errorf("concurrent charge = %d", resp.StatusCode)
			}
			ids[i] = c.ID
		})
	}
	wg.Wait()
	for i, got := range ids {
		if got != ids[0] {
			t.Errorf("concurrent charge %d = %s; want %s like the first", i, got, ids[0])
		}
	}
	if got := totals(t, sim).Charges; got != 5 {
		t.Errorf("charges after 20 duplicates = %d; want 5", got)
	}

	mismatch := callKey(t, ctx, "POST", srv.URL+"/v1/charges", testToken, "k1",
		`{"amount_cents":999,"currency":"USD","method":"pm_card_ok"}`)
	if mismatch.status != http.StatusConflict || mismatch.body["code"] != "idempotency_key_reused" {
		t.Errorf("reused key with another amount = %d %v; want 409 idempotency_key_reused", mismatch.status, mismatch.body)
	}
}

// TestRestart_LosesNothing starts the provider's handler twice on the same
// database: the second finds the first one's charges and refunds, by id and
// by key, and a repeated key still charges nothing new.
func TestRestart_LosesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := newDB(t)

	_, h1 := newSim(t, Config{}, dbURL, testToken)
	srv1 := httptest.NewServer(h1)
	kept := callKey(t, ctx, "POST", srv1.URL+"/v1/charges", testToken, "r1", charge("pm_card_ok")).body["id"].(string)
	refunded := callKey(t, ctx, "POST", srv1.URL+"/v1/charges", testToken, "r2", charge("pm_card_ok")).body["id"].(string)
	if r := call(t, ctx, "POST", srv1.URL+"/v1/charges/"+refunded+"/refund", testToken, ""); r.status != 200 {
		t.Fatalf("refund = %d %v", r.status, r.body)
	}
	srv1.Close()

	second, h2 := newSim(t, Config{}, dbURL, testToken)
	srv2 := httptest.NewServer(h2)
	defer srv2.Close()
	if r := call(t, ctx, "GET", srv2.URL+"/v1/charges/"+kept, testToken, ""); r.status != 200 || r.body["status"] != "succeeded" {
		t.Fatalf("GET /v1/charges/%s after a restart = %d %v; want 200 succeeded", kept, r.status, r.body)
	}
	if r := call(t, ctx, "GET", srv2.URL+"/v1/charges/"+refunded, testToken, ""); r.status != 200 || r.body["status"] != "refunded" {
		t.Errorf("GET the refunded charge after a restart = %d %v; want 200 refunded", r.status, r.body)
	}
	byKey := call(t, ctx, "GET", srv2.URL+"/v1/charges?idempotency_key=r1", testToken, "")
	if data, _ := byKey.body["data"].([]any); byKey.status != 200 || len(data) != 1 || data[0].(map[string]any)["id"] != kept {
		t.Errorf("GET /v1/charges?idempotency_key=r1 after a restart = %d %v; want [%s]", byKey.status, byKey.body, kept)
	}
	again := callKey(t, ctx, "POST", srv2.URL+"/v1/charges", testToken, "r1", charge("pm_card_ok"))
	if again.status != 201 || again.body["id"] != kept || again.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("repeated key after a restart = %d %v; want the replayed %s", again.status, again.body, kept)
	}
	want := Totals{Charges: 2, CapturedCents: 2500, Refunds: 1, RefundedCents: 1250}
	if got := totals(t, second); got != want {
		t.Errorf("Totals after a restart = %+v; want %+v", got, want)
	}
}

func TestChargeList_ByKey(t *testing.T) {
	t.Parallel()
	sim, srv := newTestServer(t, Config{})
	ctx := context.Background()
	id := callKey(t, ctx, "POST", srv.URL+"/v1/charges", testToken, "look me up", charge("pm_card_ok")).body["id"].(string)

	r := call(t, ctx, "GET", srv.URL+"/v1/charges?idempotency_key=look+me+up", testToken, "")
	want := map[string]any{"data": []any{map[string]any{"id": id, "status": "succeeded", "amount_cents": 1250.0, "currency": "USD"}}}
	if diff := cmp.Diff(want, r.body); r.status != 200 || diff != "" {
		t.Errorf("lookup of a charged key = %d, differs (-want +got):\n%s", r.status, diff)
	}
	if r := call(t, ctx, "GET", srv.URL+"/v1/charges?idempotency_key=never", testToken, ""); r.status != 200 || !cmp.Equal(r.body, map[string]any{"data": []any{}}) {
		t.Errorf("lookup of an unknown key = %d %v; want 200 with no data", r.status, r.body)
	}
	// A declined charge leaves nothing behind to find.
	if r := callKey(t, ctx, "POST", srv.URL+"/v1/charges", testToken, "declined", charge("pm_card_declined")); r.status != 402 {
		t.Fatalf("declined charge = %d", r.status)
	}
	if r := call(t, ctx, "GET", srv.URL+"/v1/charges?idempotency_key=declined", testToken, ""); !cmp.Equal(r.body, map[string]any{"data": []any{}}) {
		t.Errorf("lookup of a declined key = %v; want no data", r.body)
	}
	for _, q := range []string{"", "?idempotency_key=", "?idempotency_key=" + strings.Repeat("k", 256)} {
		if r := call(t, ctx, "GET", srv.URL+"/v1/charges"+q, testToken, ""); r.status != 400 || r.body["code"] != "validation_failed" {
			t.Errorf("GET /v1/charges%s = %d %v; want 400", q, r.status, r.body)
		}
	}
	if r := call(t, ctx, "GET", srv.URL+"/v1/charges?idempotency_key=look+me+up", "", ""); r.status != 401 {
		t.Errorf("lookup without the API key = %d; want 401", r.status)
	}
	// Look-ups suffer the simulated outage and errors, not the latency of a
	// charge's card network round trip.
	sim.Update(Patch{LatencyMS: ptr(60000)})
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if r := call(t, lctx, "GET", srv.URL+"/v1/charges?idempotency_key=look+me+up", testToken, ""); r.status != 200 {
		t.Errorf("lookup with a charge latency of 60s = %d %v; want 200 at once", r.status, r.body)
	}
	sim.Update(Patch{LatencyMS: ptr(0), Outage: ptr(true)})
	if r := call(t, ctx, "GET", srv.URL+"/v1/charges?idempotency_key=look+me+up", testToken, ""); r.status != 503 {
		t.Errorf("lookup during an outage = %d %v; want 503", r.status, r.body)
	}
	sim.Update(Patch{Outage: ptr(false), ErrorRate: ptr(1.0)})
	if r := call(t, ctx, "GET", srv.URL+"/v1/charges/"+id, testToken, ""); r.status != 500 {
		t.Errorf("GET a charge with error rate 1 = %d %v; want 500", r.status, r.body)
	}
}

func ptr[T any](v T) *T { return &v }

func TestTotals(t *testing.T) {
	t.Parallel()
	sim, srv := newTestServer(t, Config{})
	ctx := context.Background()
	ids := make([]string, 3)
	for i, amount := range []string{"100", "250", "4000"} {
		r := call(t, ctx, "POST", srv.URL+"/v1/charges", testToken, `{"amount_cents":`+amount+`,"currency":"USD","method":"pm_card_ok"}`)
		ids[i] = r.body["id"].(string)
	}
	for range 2 { // the second refund is a no-op
		call(t, ctx, "POST", srv.URL+"/v1/charges/"+ids[1]+"/refund", testToken, "")
	}
	callKey(t, ctx, "POST", srv.URL+"/v1/charges", testToken, "d", charge("pm_card_insufficient_funds"))
	// Faults apply to the merchant's calls, not to the operator's totals.
	sim.Update(Patch{Outage: ptr(true)})
	r := call(t, ctx, "GET", srv.URL+"/admin/totals", testToken, "")
	want := map[string]any{"charges": 3.0, "captured_cents": 4350.0, "refunds": 1.0, "refunded_cents": 250.0}
	if diff := cmp.Diff(want, r.body); r.status != 200 || diff != "" {
		t.Errorf("GET /admin/totals = %d, differs (-want +got):\n%s", r.status, diff)
	}
	for _, token := range []string{"", "wrong"} {
		if r := call(t, ctx, "GET", srv.URL+"/admin/totals", token, ""); r.status != 401 {
			t.Errorf("GET /admin/totals with key %q = %d; want 401", token, r.status)
		}
	}
}

func TestCharge_Outcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		cfg        Config
		key        string
		body       string
		wantStatus int
		wantCode   string
	}{
		{"declined", Config{}, "d1", charge("pm_card_declined"), 402, "card_declined"},
		{"insufficient funds", Config{}, "d2", charge("pm_card_insufficient_funds"), 402, "insufficient_funds"},
		{"outage", Config{Outage: true}, "o1", charge("pm_card_ok"), 503, "outage"},
		{"error rate 1", Config{ErrorRate: 1}, "e1", charge("pm_card_ok"), 500, "internal"},
		{"zero amount", Config{}, "", `{"amount_cents":0,"currency":"USD","method":"pm_card_ok"}`, 400, "validation_failed"},
		{"bad currency", Config{}, "", `{"amount_cents":1,"currency":"usd1","method":"pm_card_ok"}`, 400, "validation_failed"},
		{"no method", Config{}, "", `{"amount_cents":1,"currency":"USD"}`, 400, "validation_failed"},
		{"key too long", Config{}, strings.Repeat("k", 256), charge("pm_card_ok"), 400, "validation_failed"},
		{"key in the body", Config{}, "", `{"amount_cents":1,"currency":"USD","method":"x","idempotency_key":"k"}`, 400, "unknown_field"},
		{"unknown field", Config{}, "", `{"amount_cents":1,"currency":"USD","method":"x","extra":1}`, 400, "unknown_field"},
		{"bad json", Config{}, "", `{`, 400, "bad_json"},
	}
	// One database; the cases run one after another and each must leave
	// the ledger as it found it.
	sim, srv := newTestServer(t, Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim.Update(Patch{LatencyMS: &tt.cfg.LatencyMS, ErrorRate: &tt.cfg.ErrorRate, Outage: &tt.cfg.Outage})
			r := callKey(t, context.Background(), "POST", srv.URL+"/v1/charges", testToken, tt.key, tt.body)
			if r.status != tt.wantStatus || r.body["code"] != tt.wantCode {
				t.Errorf("charge = %d %v; want %d %s", r.status, r.body, tt.wantStatus, tt.wantCode)
			}
			if got := totals(t, sim).Charges; got != 0 {
				t.Errorf("charges = %d; want 0", got)
			}
		})
	}
}

func TestCharge_LatencyCancelledChargesNothing(t *testing.T) {
	t.Parallel()
	sim, h := newSim(t, Config{LatencyMS: 60000}, newDB(t), testToken)
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequestWithContext(ctx, "POST", "/v1/charges", strings.NewReader(charge("pm_card_ok")))
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Idempotency-Key", "slow")
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.ServeHTTP(httptest.NewRecorder(), req)
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	<-done // returns only because the cancellation ended the sleep
	if got := totals(t, sim).Charges; got != 0 {
		t.Errorf("charges after a cancelled slow request = %d; want 0", got)
	}

	// With a latency the caller waits for, the charge happens.
	sim.Update(Patch{LatencyMS: ptr(30)})
	srv := httptest.NewServer(h)
	defer srv.Close()
	if r := callKey(t, context.Background(), "POST", srv.URL+"/v1/charges", testToken, "k", charge("pm_card_ok")); r.status != 201 {
		t.Errorf("charge with latency = %d; want 201", r.status)
	}
}

func TestRefund(t *testing.T) {
	t.Parallel()
	_, srv := newTestServer(t, Config{})
	c := callKey(t, context.Background(), "POST", srv.URL+"/v1/charges", testToken, "r1", charge("pm_card_ok"))
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
	_, h := newSim(t, Config{}, newDB(t), "")
	srv := httptest.NewServer(h)
	defer srv.Close()
	if r := call(t, context.Background(), "PUT", srv.URL+"/admin/config", "", `{"outage":true}`); r.status != 401 {
		t.Errorf("PUT without a configured token = %d; want 401", r.status)
	}
}

func TestCharge_NeedsTheAPIKey(t *testing.T) {
	t.Parallel()
	sim, srv := newTestServer(t, Config{})
	for _, token := range []string{"", "wrong"} {
		if r := callKey(t, context.Background(), "POST", srv.URL+"/v1/charges", token, "k", charge("pm_card_ok")); r.status != 401 {
			t.Errorf("charge with key %q = %d; want 401", token, r.status)
		}
	}
	if got := totals(t, sim).Charges; got != 0 {
		t.Errorf("charges after refused calls = %d; want 0", got)
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
