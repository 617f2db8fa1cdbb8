package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// lossyProvider is a proxy in front of the provider: the first charge is
// made but its answer is lost, the second never reaches the provider (both
// hang until payment gives up), everything else passes.
func lossyProvider(t *testing.T, target string) *httptest.Server {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	var charges atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/charges" {
			rp.ServeHTTP(w, r)
			return
		}
		switch charges.Add(1) {
		case 1: // charged, answer lost
			rp.ServeHTTP(httptest.NewRecorder(), r.WithContext(context.WithoutCancel(r.Context())))
			<-r.Context().Done()
		case 2: // never charged; payment cannot know
			// Read the body, so the server watches the connection and
			// ends the context when payment hangs up.
			_, _ = io.Copy(io.Discard, r.Body)
			<-r.Context().Done()
		default:
			rp.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// providerTotals reads the provider's ledger.
func (s *stack) providerTotals() map[string]any {
	s.t.Helper()
	r := s.do(http.MethodGet, "provider", "/admin/totals", nil, "Authorization", "Bearer "+providerKey)
	if r.status != http.StatusOK {
		s.t.Fatalf("GET /admin/totals = %d %s", r.status, r.raw)
	}
	return r.body
}

// paymentMetric is the value of one sample on payment's /metrics, 0 when
// it is absent.
func (s *stack) paymentMetric(sample string) string {
	s.t.Helper()
	resp, err := http.Get(s.url("payment", "/metrics"))
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			return rest
		}
	}
	return "0"
}

// TestSaga_UnknownPaymentOutcome drives the order service's recovery, as it
// is, against payment intents: a capture whose answer is lost fails the
// order (503), and the recovery's list of the order's payments makes
// payment find the charge by key, so it is refunded; a capture that never
// reached the provider is answered 503 payment_unsettled by that list
// during its grace period, the recovery retries with its backoff, and the
// intent is abandoned with nothing to refund. The reconciler is off, so
// only order's recovery settles. The provider's money is conserved.
func TestSaga_UnknownPaymentOutcome(t *testing.T) {
	s := startStack(t)
	// payment talks to the provider through the lossy proxy.
	s.stop("payment")
	proxy := lossyProvider(t, s.url("provider", ""))
	s.env["payment"] = append(s.env["payment"], "PAYMENT_PROVIDER_URL="+proxy.URL,
		"PAYMENT_RECONCILE_INTERVAL=1h")
	s.start("payment")

	place := func() string {
		t.Helper()
		r := s.placeOrder(orderBody("cus_intent", "SKU-00010", 1, "pm_card_ok"), newKey())
		if r.status != http.StatusServiceUnavailable || r.body["code"] != "dependency_unavailable" {
			t.Fatalf("POST /v1/orders = %d %s; want 503 dependency_unavailable", r.status, r.raw)
		}
		return r.body["order_id"].(string)
	}
	status := func(id string) string {
		r := s.do(http.MethodGet, "order", "/v1/orders/"+id, nil, s.admin()...)
		st, _ := r.body["status"].(string)
		return st
	}

	// 1. Charged, answer lost: the recovery finds the charge and refunds it.
	lost := place()
	if tot := s.providerTotals(); tot["charges"] != 1.0 {
		t.Fatalf("provider totals after the lost answer = %v; want one charge", tot)
	}
	eventually(t, 90*time.Second, "the lost charge is refunded by order's recovery", func() bool {
		return s.providerTotals()["refunds"] == 1.0
	})
	tot := s.providerTotals()
	if tot["captured_cents"] != tot["refunded_cents"] {
		t.Errorf("provider totals = %v; want captured = refunded (the order failed)", tot)
	}
	r := s.do(http.MethodGet, "payment", "/v1/payments?order_id="+lost, nil, s.admin()...)
	var list struct {
		Payments []struct{ Status string } `json:"payments"`
	}
	_ = json.Unmarshal(r.raw, &list)
	if r.status != http.StatusOK || len(list.Payments) != 1 || list.Payments[0].Status != "refunded" {
		t.Errorf("payments of the failed order = %d %s; want one refunded", r.status, r.raw)
	}
	if st := status(lost); st != "failed" {
		t.Errorf("order %s = %s; want failed", lost, st)
	}
	if got := s.paymentMetric(`orderflow_payment_intents_settled_total{outcome="captured"}`); got != "1" {
		t.Errorf("settled captured = %s; want 1", got)
	}

	// 2. Never charged: the list refuses while the intent is in its grace
	// period, order retries, and the intent is abandoned.
	never := place()
	eventually(t, 120*time.Second, "order's recovery has the uncharged intent abandoned", func() bool {
		return s.paymentMetric(`orderflow_payment_intents_settled_total{outcome="abandoned"}`) == "1"
	})
	log, _ := os.ReadFile(filepath.Join(s.dir, "payment.log"))
	if !strings.Contains(string(log), "payment intent not settled") {
		t.Error("payment never answered order's list with payment_unsettled during the grace period")
	}
	if tot := s.providerTotals(); tot["charges"] != 1.0 || tot["refunds"] != 1.0 {
		t.Errorf("provider totals = %v; want still one charge, refunded", tot)
	}
	if st := status(never); st != "failed" {
		t.Errorf("order %s = %s; want failed", never, st)
	}
}
