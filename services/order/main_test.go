package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/pkg/auth"
	"github.com/orderflow/orderflow/pkg/authtest"
	"github.com/orderflow/orderflow/pkg/dbtest"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/servicetest"
)

// fakeDownstreams stands in for inventory and payment, well enough for one
// successful order; like them, each verifies the caller's token with v and
// wants its own scope.
func fakeDownstreams(t *testing.T, v *auth.Verifier) (inventoryURL, paymentURL string) {
	t.Helper()
	inv := http.NewServeMux()
	inv.HandleFunc("POST /v1/reservations", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			OrderID string `json:"order_id"`
			Items   []struct {
				SKU      string `json:"sku"`
				Quantity int    `json:"quantity"`
			} `json:"items"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		type item struct {
			SKU            string `json:"sku"`
			Quantity       int    `json:"quantity"`
			UnitPriceCents int64  `json:"unit_price_cents"`
		}
		items := []item{}
		for _, it := range req.Items {
			items = append(items, item{SKU: it.SKU, Quantity: it.Quantity, UnitPriceCents: 1250})
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"order_id": req.OrderID, "status": "reserved",
			"items": items, "expires_at": time.Now().Add(15 * time.Minute)})
	})
	inv.HandleFunc("POST /v1/reservations/{id}/{op}", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"order_id":"`+r.PathValue("id")+`","status":"committed"}`)
	})
	pay := http.NewServeMux()
	pay.HandleFunc("POST /v1/payments", func(w http.ResponseWriter, r *http.Request) {
		var req map[string]any
		_ = json.NewDecoder(r.Body).Decode(&req)
		if r.Header.Get("Idempotency-Key") != req["order_id"] {
			http.Error(w, "idempotency key is not the order id", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"id": "pay_1", "order_id": req["order_id"],
			"status": "captured", "amount_cents": req["amount_cents"], "currency": req["currency"]})
	})
	invSrv := httptest.NewServer(v.Authenticate(auth.Require(auth.ScopeReservations)(inv)))
	paySrv := httptest.NewServer(v.Authenticate(auth.Require(auth.ScopePayments)(pay)))
	t.Cleanup(invSrv.Close)
	t.Cleanup(paySrv.Close)
	return invSrv.URL, paySrv.URL
}

func TestRun(t *testing.T) {
	fsys, err := migrations.For("order")
	if err != nil {
		t.Fatal(err)
	}
	dbURL := dbtest.NewURL(t, fsys)
	hydra := authtest.Start(t, authtest.Options{})
	v, err := auth.NewVerifier(auth.Config{Issuer: hydra.Issuer, Audience: "orderflow"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	inventoryURL, paymentURL := fakeDownstreams(t, v)
	customer, err := hydra.CustomerToken(context.Background(), "cus_1")
	if err != nil {
		t.Fatal(err)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	vars := map[string]string{
		"ORDER_ADDR":              "127.0.0.1:0",
		"ORDER_DATABASE_URL":      dbURL,
		"ORDER_DB_MAX_CONNS":      "5",
		"ORDER_INVENTORY_URL":     inventoryURL,
		"ORDER_PAYMENT_URL":       paymentURL,
		"ORDER_RECOVERY_INTERVAL": "100ms",
		"ORDER_INVOICE_QUEUE":     "test-invoices-" + suffix,
		"ORDER_EMAIL_QUEUE":       "test-emails-" + suffix,
		"AWS_ENDPOINT_URL_SQS":    "http://127.0.0.1:4566",
		"AWS_REGION":              "us-east-1",
		"AWS_ACCESS_KEY_ID":       "test",
		"AWS_SECRET_ACCESS_KEY":   "test",
		"LOG_LEVEL":               "info",
		"AUTH_ISSUER":             hydra.Issuer,
		"ORDER_CLIENT_SECRET":     authtest.OrderSecret,
	}
	getenv := func(k string) string { return vars[k] }

	srv := servicetest.Start(t, func(ctx context.Context, stdout io.Writer) error {
		return run(ctx, []string{"order"}, getenv, stdout, io.Discard)
	})
	base := srv.URL
	srv.WaitFor(t, 30*time.Second, "/healthz", answersOK(base+"/healthz"))

	body := `{"customer_id":"cus_1","email":"a@example.com","items":[{"sku":"SKU-00001","quantity":2}],"payment_method":"pm_card_ok"}`
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/orders", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "e2e-"+suffix)
	req.Header.Set("Authorization", "Bearer "+customer)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var o struct {
		ID         string `json:"id"`
		Status     string `json:"status"`
		TotalCents int64  `json:"total_cents"`
	}
	err = json.NewDecoder(resp.Body).Decode(&o)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusCreated || o.Status != "confirmed" || o.TotalCents != 2500 {
		t.Fatalf("POST /v1/orders = %d %+v, %v; want 201 confirmed, total 2500", resp.StatusCode, o, err)
	}

	// The relay publishes the confirmation to SQS and marks the outbox row sent.
	pool, err := postgres.Open(context.Background(), dbURL, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	srv.WaitFor(t, 30*time.Second, "the outbox row sent", func() bool {
		var sent bool
		err := pool.QueryRow(context.Background(),
			`SELECT sent_at IS NOT NULL FROM outbox WHERE order_id = $1`, o.ID).Scan(&sent)
		return err == nil && sent
	})
	srv.WaitFor(t, 30*time.Second, "/readyz", answersOK(base+"/readyz"))

	// Each package exports its own instruments on the one /metrics route.
	metrics := srv.Scrape(t)
	for _, name := range []string{"orderflow_http_requests_total", "orderflow_orders_total",
		"orderflow_breaker_state", "orderflow_ratelimit_fail_open_total", "orderflow_outbox_lag_seconds"} {
		if !strings.Contains(metrics, "\n"+name) {
			t.Errorf("/metrics has no %s", name)
		}
	}
	// The gauge counts the compensations waiting for an operator, from the
	// database, over all replicas.
	if got := needsAttention(t, srv); got != "0" {
		t.Errorf("orderflow_compensation_needs_attention = %q; want 0", got)
	}
	if _, err := pool.Exec(context.Background(), `UPDATE orders SET needs_attention_at = now() WHERE id = $1`, o.ID); err != nil {
		t.Fatal(err)
	}
	if got := needsAttention(t, srv); got != "1" {
		t.Errorf("orderflow_compensation_needs_attention = %q after parking one; want 1", got)
	}

	if err := srv.Stop(t); err != nil {
		t.Fatalf("run = %v; want nil", err)
	}
}

// answersOK reports whether GET url answers 200.
func answersOK(url string) func() bool {
	return func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
}

// needsAttention returns the value of orderflow_compensation_needs_attention
// in the service's /metrics, "" when it is absent.
func needsAttention(t *testing.T, srv *servicetest.Service) string {
	t.Helper()
	body := srv.Scrape(t)
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "orderflow_compensation_needs_attention{") || strings.HasPrefix(line, "orderflow_compensation_needs_attention ") {
			return line[strings.LastIndex(line, " ")+1:]
		}
	}
	t.Errorf("/metrics has no orderflow_compensation_needs_attention:\n%s", body)
	return ""
}

// TestReadConfig_BudgetsNest: a call with all its retries must fit inside
// the saga's deadline, and the saga inside the recovery loop's patience.
func TestReadConfig_BudgetsNest(t *testing.T) {
	t.Parallel()
	base := map[string]string{"ORDER_CLIENT_SECRET": "s", "AUTH_ISSUER": "http://127.0.0.1:4444/"}
	tests := []struct {
		name    string
		vars    map[string]string
		wantErr string
	}{
		{name: "defaults", vars: map[string]string{}},
		// (2+1) × 5s + 2 × 1.25 × 1s = 17.5s: the old defaults.
		{name: "call longer than the saga", vars: map[string]string{"ORDER_CALL_TIMEOUT": "5s"}, wantErr: "ORDER_REQUEST_TIMEOUT (15s) must be longer than a call with its retries (17.5s"},
		{name: "fewer retries fit", vars: map[string]string{"ORDER_CALL_TIMEOUT": "5s", "ORDER_RETRY_MAX": "1"}},
		{name: "saga longer than recovery", vars: map[string]string{"ORDER_REQUEST_TIMEOUT": "40s"}, wantErr: "ORDER_RECOVERY_AFTER must be longer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars := maps.Clone(base)
			maps.Copy(vars, tt.vars)
			_, err := readConfig([]string{"order"}, func(k string) string { return vars[k] }, io.Discard)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("readConfig = %v; want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("readConfig = %v; want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
