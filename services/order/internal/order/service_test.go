package order

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/orderflow/orderflow/pkg/web"
)

func decodeMap(t *testing.T, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		t.Fatalf("decode %q: %v", w.Body.String(), err)
	}
	return m
}

func decodeOrder(t *testing.T, w *httptest.ResponseRecorder) orderResponse {
	t.Helper()
	var o orderResponse
	if err := json.Unmarshal(w.Body.Bytes(), &o); err != nil {
		t.Fatalf("decode %q: %v", w.Body.String(), err)
	}
	return o
}

// dbOrder is what the database holds beyond the API view.
type dbOrder struct {
	Status          string
	FailureReason   *string
	CompensateAfter *time.Time
}

func (h *harness) order(t *testing.T, id string) dbOrder {
	t.Helper()
	var o dbOrder
	const q = `SELECT status, failure_reason, compensate_after FROM orders WHERE id = $1`
	if err := h.pool.QueryRow(context.Background(), q, id).Scan(&o.Status, &o.FailureReason, &o.CompensateAfter); err != nil {
		t.Fatalf("select order %s: %v", id, err)
	}
	return o
}

func (h *harness) outbox(t *testing.T, orderID string) []string {
	t.Helper()
	return h.column(t, `SELECT event_type FROM outbox WHERE order_id = $1 ORDER BY id`, orderID)
}

func wantProblem(t *testing.T, w *httptest.ResponseRecorder, status int, code string) map[string]any {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status = %d; want %d (body %s)", w.Code, status, w.Body.String())
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type = %q; want application/problem+json", ct)
	}
	m := decodeMap(t, w)
	if m["code"] != code {
		t.Errorf("code = %v; want %s (body %s)", m["code"], code, w.Body.String())
	}
	for _, k := range []string{"type", "title", "status", "detail"} {
		if _, ok := m[k]; !ok {
			t.Errorf("problem has no %q member: %s", k, w.Body.String())
		}
	}
	return m
}

// wantUnavailable checks that w answers an order that failed because a
// dependency was unavailable (503 dependency_unavailable) and returns the
// order's id.
func wantUnavailable(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	id, _ := wantProblem(t, w, http.StatusServiceUnavailable, "dependency_unavailable")["order_id"].(string)
	if id == "" {
		t.Fatalf("503 %s names no order_id", w.Body)
	}
	return id
}

func TestCreate_HappyPath(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	w := h.post(t, "k1", okBody)
	if w.Code != http.StatusCreated {
		t.Fatalf("status = %d; want 201 (%s)", w.Code, w.Body.String())
	}
	o := decodeOrder(t, w)
	if got, want := w.Header().Get("Location"), "/v1/orders/"+o.ID; got != want {
		t.Errorf("Location = %q; want %q", got, want)
	}
	if o.Status != StatusConfirmed || o.PaymentID == nil || *o.PaymentID == "" || o.FailureReason != nil {
		t.Errorf("order = %+v; want confirmed with a payment id", o)
	}
	wantItems := []itemResponse{{SKU: "SKU-00001", Quantity: 2, UnitPriceCents: 900}, {SKU: "SKU-2", Quantity: 1, UnitPriceCents: 500}}
	if diff := cmp.Diff(wantItems, o.Items); diff != "" {
		t.Errorf("items (-want +got):\n%s", diff)
	}
	if o.TotalCents != 2300 || o.Currency != "USD" || o.Email == nil || *o.Email != "a@example.com" {
		t.Errorf("order = %+v; want total 2300 USD, email a@example.com", o)
	}
	if diff := cmp.Diff([]string{"order.confirmed"}, h.outbox(t, o.ID)); diff != "" {
		t.Errorf("outbox (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"reserve", "commit"}, h.inv.Calls()); diff != "" {
		t.Errorf("inventory calls (-want +got):\n%s", diff)
	}
	caps := h.pay.Captures()
	if len(caps) != 1 || caps[0] != (PaymentRequest{OrderID: o.ID, AmountCents: 2300, Currency: "USD", Method: "pm_card_ok"}) {
		t.Errorf("captures = %+v", caps)
	}
	// GET shows the same order.
	g := h.do(t, http.MethodGet, "/v1/orders/"+o.ID)
	if g.Code != http.StatusOK {
		t.Fatalf("GET = %d", g.Code)
	}
	if diff := cmp.Diff(o, decodeOrder(t, g)); diff != "" {
		t.Errorf("GET (-created +got):\n%s", diff)
	}
	// Every field is present even when empty.
	m := decodeMap(t, w)
	for _, k := range []string{"id", "customer_id", "email", "status", "items", "total_cents", "currency",
		"payment_id", "failure_reason", "created_at", "updated_at"} {
		if _, ok := m[k]; !ok {
			t.Errorf("order JSON has no %q", k)
		}
	}
}

func TestGet_NotFound(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	for _, id := range []string{"0190a000-0000-7000-8000-000000000000", "not-a-uuid"} {
		wantProblem(t, h.do(t, http.MethodGet, "/v1/orders/"+id), http.StatusNotFound, "not_found")
		wantProblem(t, h.do(t, http.MethodPost, "/v1/orders/"+id+"/cancel"), http.StatusNotFound, "not_found")
	}
}

func TestCreate_Rejected(t *testing.T) {
	t.Parallel()
	for _, code := range []string{"out_of_stock", "unknown_sku"} {
		t.Run(code, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, Config{})
			h.inv.set(func(f *fakeInventory) { f.reserveErr = &RejectedError{Code: code, SKUs: []string{"SKU-2"}} })
			w := h.post(t, "k1", okBody)
			m := wantProblem(t, w, http.StatusConflict, code)
			if diff := cmp.Diff([]any{"SKU-2"}, m["skus"]); diff != "" {
				t.Errorf("skus (-want +got):\n%s", diff)
			}
			id, _ := m["order_id"].(string)
			if id == "" {
				t.Fatalf("no order_id in %s", w.Body.String())
			}
			got := h.order(t, id)
			if got.Status != StatusRejected || got.FailureReason == nil || *got.FailureReason != code {
				t.Errorf("order = %+v; want rejected/%s", got, code)
			}
			if len(h.pay.Captures()) != 0 || len(h.outbox(t, id)) != 0 {
				t.Errorf("a rejected order was charged or announced")
			}
		})
	}
}

func TestCreate_Declined(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.pay.set(func(f *fakePayments) { f.captureErr = &DeclinedError{DeclineCode: "insufficient_funds"} })
	w := h.post(t, "k1", okBody)
	m := wantProblem(t, w, http.StatusPaymentRequired, "payment_declined")
	if m["decline_code"] != "insufficient_funds" {
		t.Errorf("decline_code = %v", m["decline_code"])
	}
	id := m["order_id"].(string)
	got := h.order(t, id)
	if got.Status != StatusPaymentFailed || *got.FailureReason != "insufficient_funds" || got.CompensateAfter != nil {
		t.Errorf("order = %+v; want payment_failed/insufficient_funds, nothing left to compensate", got)
	}
	if diff := cmp.Diff([]string{"reserve", "release"}, h.inv.Calls()); diff != "" {
		t.Errorf("inventory calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"order.payment_failed"}, h.outbox(t, id)); diff != "" {
		t.Errorf("outbox (-want +got):\n%s", diff)
	}
}

func TestCreate_InventoryUnavailable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		reserveErr  error
		status      string
		releaseErr  error
		wantPending bool // compensation left for the recovery loop
	}{
		{name: "down", reserveErr: errDown},
		{name: "5xx", reserveErr: &StatusError{Op: "reserve", Status: 500}},
		{name: "timeout", reserveErr: context.DeadlineExceeded},
		{name: "expired reservation", status: "expired"},
		{name: "release fails too", reserveErr: errDown, releaseErr: errDown, wantPending: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, Config{})
			h.inv.set(func(f *fakeInventory) {
				f.reserveErr, f.reserveStatus, f.releaseErr = tt.reserveErr, tt.status, tt.releaseErr
			})
			w := h.post(t, "k1", okBody)
			id := wantUnavailable(t, w)
			if w.Header().Get("Retry-After") != "1" {
				t.Errorf("Retry-After = %q; want 1", w.Header().Get("Retry-After"))
			}
			got := h.order(t, id)
			if got.Status != StatusFailed || *got.FailureReason != ReasonInventoryUnavailable {
				t.Errorf("order = %+v; want failed/inventory_unavailable", got)
			}
			if (got.CompensateAfter != nil) != tt.wantPending {
				t.Errorf("compensate_after = %v; want set: %v", got.CompensateAfter, tt.wantPending)
			}
			if diff := cmp.Diff([]string{"reserve", "release"}, h.inv.Calls()); diff != "" {
				t.Errorf("inventory calls (-want +got):\n%s", diff)
			}
			if len(h.pay.Captures()) != 0 {
				t.Errorf("payment was attempted")
			}
		})
	}
}

func TestCreate_SlowInventoryTimesOut(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{CallTimeout: 50 * time.Millisecond})
	h.inv.set(func(f *fakeInventory) { f.reserveDelay = 5 * time.Second })
	w := h.post(t, "k1", okBody)
	id := wantUnavailable(t, w)
	if got := h.order(t, id); got.Status != StatusFailed {
		t.Errorf("status = %s; want failed", got.Status)
	}
}

// TestCreate_KeepsCallersDeadline: a caller that will wait 300 ms (its
// Request-Timeout) gets its answer by then, not after the saga's own 10 s,
// and the order is failed, not left pending.
func TestCreate_KeepsCallersDeadline(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{CallTimeout: 9 * time.Second, RequestTimeout: 10 * time.Second})
	h.inv.set(func(f *fakeInventory) { f.reserveDelay = 8 * time.Second })
	r := httptest.NewRequest(http.MethodPost, "/v1/orders", strings.NewReader(okBody))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Idempotency-Key", "k1")
	r.Header.Set(web.RequestTimeoutHeader, "300")
	w := httptest.NewRecorder()
	start := time.Now()
	h.h.ServeHTTP(w, r)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("answered after %v; want about 300ms (the caller's Request-Timeout), well before the saga's 10s", took)
	}
	id := wantUnavailable(t, w)
	if got := h.order(t, id); got.Status != StatusFailed {
		t.Errorf("status = %s; want failed", got.Status)
	}
}

func TestCreate_PaymentUnknownThenRecovered(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{RecoveryAfter: 0})
	// The capture goes through but its answer is lost.
	h.pay.set(func(f *fakePayments) { f.captureErr, f.settleOnError = errDown, true })
	w := h.post(t, "k1", okBody)
	id := wantUnavailable(t, w)
	if w.Header().Get("Retry-After") != "1" {
		t.Errorf("no Retry-After")
	}
	got := h.order(t, id)
	if got.Status != StatusFailed || *got.FailureReason != ReasonPaymentUnavailable || got.CompensateAfter == nil {
		t.Fatalf("order = %+v; want failed/payment_unavailable with a compensation due", got)
	}
	if diff := cmp.Diff([]string{"reserve", "release"}, h.inv.Calls()); diff != "" {
		t.Errorf("inventory calls (-want +got):\n%s", diff)
	}
	if len(h.pay.Refunds()) != 0 {
		t.Fatalf("refunded before the recovery loop")
	}

	h.recover(t)
	if diff := cmp.Diff([]string{"pay_x"}, h.pay.Refunds()); diff != "" {
		t.Errorf("refunds (-want +got):\n%s", diff)
	}
	if got := h.order(t, id); got.CompensateAfter != nil || got.Status != StatusFailed {
		t.Errorf("after recovery order = %+v; want failed, compensation done", got)
	}
	// A second round has nothing to do.
	h.recover(t)
	if n := len(h.pay.Refunds()); n != 1 {
		t.Errorf("refunds = %d after a second round; want 1", n)
	}
}

func TestCreate_CompensationRetriedUntilItWorks(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{RecoveryAfter: 0, CompensationBackoff: time.Millisecond,
		CompensationMaxBackoff: time.Millisecond})
	h.inv.set(func(f *fakeInventory) { f.reserveErr, f.releaseErr = errDown, errDown })
	id := wantUnavailable(t, h.post(t, "k1", okBody))
	h.recover(t)
	if h.order(t, id).CompensateAfter == nil {
		t.Fatalf("a failed compensation was dropped")
	}
	h.inv.set(func(f *fakeInventory) { f.releaseErr = nil })
	time.Sleep(5 * time.Millisecond) // let the 1ms backoff run out
	h.recover(t)
	if got := h.order(t, id); got.CompensateAfter != nil {
		t.Errorf("compensate_after = %v; want cleared", got.CompensateAfter)
	}
}

func TestCreate_CommitFails(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.inv.set(func(f *fakeInventory) {
		f.commitErr = &StatusError{Op: "commit", Status: 409, Code: "reservation_not_active"}
	})
	id := wantUnavailable(t, h.post(t, "k1", okBody))
	got := h.order(t, id)
	if got.Status != StatusFailed || got.CompensateAfter != nil {
		t.Errorf("order = %+v; want failed, compensated", got)
	}
	if diff := cmp.Diff([]string{"pay_x"}, h.pay.Refunds()); diff != "" {
		t.Errorf("refunds (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"reserve", "commit", "release"}, h.inv.Calls()); diff != "" {
		t.Errorf("inventory calls (-want +got):\n%s", diff)
	}
}

func TestCreate_RecoveryWinsOverLateSaga(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{RecoveryAfter: 0})
	// The recovery loop declares the saga dead while it commits.
	h.inv.set(func(f *fakeInventory) {
		f.onCommit = func() {
			h.inv.set(func(f *fakeInventory) { f.onCommit = nil })
			if err := h.svc.Recover(context.Background()); err != nil {
				t.Error(err)
			}
		}
	})
	w := h.post(t, "k1", okBody)
	id := wantUnavailable(t, w)
	got := h.order(t, id)
	if got.Status != StatusFailed || *got.FailureReason != ReasonSagaTimeout {
		t.Errorf("order = %+v; want failed/saga_timeout", got)
	}
	if len(h.outbox(t, id)) != 0 {
		t.Errorf("a failed order was announced confirmed")
	}
	if len(h.pay.Refunds()) == 0 {
		t.Errorf("the captured payment was not refunded")
	}
	// Counted once, by the recovery loop that decided it.
	if diff := cmp.Diff(map[string]int64{StatusFailed: 1}, h.metric(t, "orderflow.orders", "status")); diff != "" {
		t.Errorf("orders counted (-want +got):\n%s", diff)
	}
	// The key holds the recovery's 503, equal to what the saga answered.
	r := h.post(t, "k1", okBody)
	if r.Code != http.StatusCreated {
		t.Errorf("retry after the 503 = %d; want a fresh attempt that succeeds (201)", r.Code)
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	o := h.confirmed(t, "k1")

	for i := range 2 { // repeating is harmless
		c := h.do(t, http.MethodPost, "/v1/orders/"+o.ID+"/cancel")
		if c.Code != http.StatusOK {
			t.Fatalf("cancel #%d = %d (%s)", i+1, c.Code, c.Body.String())
		}
		if got := decodeOrder(t, c); got.Status != StatusCancelled {
			t.Errorf("cancel #%d status = %s", i+1, got.Status)
		}
	}
	if diff := cmp.Diff([]string{*o.PaymentID}, h.pay.Refunds()); diff != "" {
		t.Errorf("refunds (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"reserve", "commit", "release"}, h.inv.Calls()); diff != "" {
		t.Errorf("inventory calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"order.confirmed", "order.cancelled"}, h.outbox(t, o.ID)); diff != "" {
		t.Errorf("outbox (-want +got):\n%s", diff)
	}
	if got := h.order(t, o.ID); got.Status != StatusCancelled || got.CompensateAfter != nil {
		t.Errorf("order = %+v; want cancelled, compensated", got)
	}
}

func TestCancel_RefundFailsThenRecovered(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	o := h.confirmed(t, "k1")
	h.pay.set(func(f *fakePayments) { f.refundErr = errDown })
	if c := h.do(t, http.MethodPost, "/v1/orders/"+o.ID+"/cancel"); c.Code != http.StatusOK {
		t.Fatalf("cancel = %d", c.Code)
	}
	if h.order(t, o.ID).CompensateAfter == nil {
		t.Fatalf("failed refund not left for the recovery loop")
	}
	h.pay.set(func(f *fakePayments) { f.refundErr = nil })
	h.recover(t)
	if got := h.order(t, o.ID); got.CompensateAfter != nil {
		t.Errorf("compensation not done by the recovery loop")
	}
	if refunds := h.pay.Refunds(); len(refunds) != 2 || refunds[1] != *o.PaymentID {
		t.Errorf("refunds = %v", refunds)
	}
}

func TestCancel_NotCancellable(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.inv.set(func(f *fakeInventory) { f.reserveErr = &RejectedError{Code: "out_of_stock", SKUs: []string{"SKU-2"}} })
	rejected := decodeMap(t, h.post(t, "k1", okBody))["order_id"].(string)
	wantProblem(t, h.do(t, http.MethodPost, "/v1/orders/"+rejected+"/cancel"), http.StatusConflict, "not_cancellable")

	pending := insertOrder(t, h, "k2", time.Now())
	wantProblem(t, h.do(t, http.MethodPost, "/v1/orders/"+pending+"/cancel"), http.StatusConflict, "not_cancellable")
	if got := h.order(t, pending); got.Status != StatusPending {
		t.Errorf("pending order became %s", got.Status)
	}
}

// insertOrder stores a pending order the way a saga that died would leave
// it, with its idempotency key in progress.
func insertOrder(t *testing.T, h *harness, key string, created time.Time) string {
	t.Helper()
	o := Order{ID: uuid.Must(uuid.NewV7()).String(), CustomerID: "cus_1",
		PaymentMethod: "pm_card_ok", Currency: "USD", CreatedAt: created,
		Items: []Item{{SKU: "SKU-1", Quantity: 1}}}
	c, err := h.svc.store.begin(context.Background(), customerKey(o.CustomerID, key), []byte("hash"), o)
	if err != nil || c.state != claimStarted {
		t.Fatalf("begin = %+v, %v", c, err)
	}
	return o.ID
}

func TestRecover_StalePending(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{RecoveryAfter: time.Minute})
	stale := insertOrder(t, h, "stale", time.Now().Add(-time.Hour))
	fresh := insertOrder(t, h, "fresh", time.Now())
	// The dead saga had captured a payment.
	if _, err := h.pay.Capture(context.Background(), PaymentRequest{OrderID: stale, AmountCents: 100}); err != nil {
		t.Fatal(err)
	}

	h.recover(t)
	got := h.order(t, stale)
	if got.Status != StatusFailed || *got.FailureReason != ReasonSagaTimeout || got.CompensateAfter != nil {
		t.Errorf("stale order = %+v; want failed/saga_timeout, compensated", got)
	}
	if got := h.order(t, fresh); got.Status != StatusPending {
		t.Errorf("fresh order = %s; want pending (its saga may be running)", got.Status)
	}
	var status int
	var response []byte
	if err := h.pool.QueryRow(context.Background(),
		`SELECT status_code, response FROM idempotency_keys WHERE key = $1`, customerKey("cus_1", "stale")).Scan(&status, &response); err != nil {
		t.Fatal(err)
	}
	out, err := decodeOutcome(status, response)
	if err != nil || status != 503 || !errors.Is(out.Err(), ErrUnavailable) || out.Order.ID != stale {
		t.Errorf("key row = %d %s (%v); want 503, the order failed as unavailable", status, response, err)
	}
	if diff := cmp.Diff([]string{"release"}, h.inv.Calls()); diff != "" {
		t.Errorf("inventory calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"pay_x"}, h.pay.Refunds()); diff != "" {
		t.Errorf("refunds (-want +got):\n%s", diff)
	}
}

func TestCreate_RetryAfter503(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.inv.set(func(f *fakeInventory) { f.reserveErr = errDown })
	first := wantUnavailable(t, h.post(t, "k1", okBody))
	h.inv.set(func(f *fakeInventory) { f.reserveErr = nil })

	w := h.post(t, "k1", okBody)
	if w.Code != http.StatusCreated {
		t.Fatalf("retry = %d (%s); want 201", w.Code, w.Body.String())
	}
	if w.Header().Get("Idempotent-Replayed") != "" {
		t.Errorf("a fresh attempt was marked replayed")
	}
	o := decodeOrder(t, w)
	if o.ID == first || o.Status != StatusConfirmed {
		t.Errorf("retry order = %+v; want a new confirmed order", o)
	}
	if got := h.order(t, first); got.Status != StatusFailed {
		t.Errorf("first order = %s; want failed", got.Status)
	}
	// From now on the key replays the success.
	r := h.post(t, "k1", okBody)
	if r.Code != http.StatusCreated || r.Body.String() != w.Body.String() || r.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay = %d %s", r.Code, r.Body.String())
	}
}

func TestCreate_Replay(t *testing.T) {
	t.Parallel()
	// The same request spelled differently: whitespace and key order.
	respelled := `{ "payment_method": "pm_card_ok", "items": [ {"quantity": 2, "sku": "SKU-00001"},
		{"sku":"SKU-2","quantity":1} ], "email":"a@example.com", "customer_id": "cus_1" }`
	tests := []struct {
		name   string
		setup  func(h *harness)
		status int
	}{
		{name: "created", status: http.StatusCreated},
		{name: "declined", status: http.StatusPaymentRequired, setup: func(h *harness) {
			h.pay.set(func(f *fakePayments) { f.captureErr = &DeclinedError{DeclineCode: "card_declined"} })
		}},
		{name: "out of stock", status: http.StatusConflict, setup: func(h *harness) {
			h.inv.set(func(f *fakeInventory) { f.reserveErr = &RejectedError{Code: "out_of_stock", SKUs: []string{"SKU-2"}} })
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, Config{})
			if tt.setup != nil {
				tt.setup(h)
			}
			first := h.post(t, "k1", okBody)
			if first.Code != tt.status {
				t.Fatalf("first = %d; want %d", first.Code, tt.status)
			}
			for _, body := range []string{okBody, respelled} {
				r := h.post(t, "k1", body)
				if r.Code != first.Code || r.Body.String() != first.Body.String() {
					t.Errorf("replay = %d %s; want %d %s", r.Code, r.Body.String(), first.Code, first.Body.String())
				}
				if r.Header().Get("Idempotent-Replayed") != "true" {
					t.Errorf("no Idempotent-Replayed header")
				}
				for _, hdr := range []string{"Content-Type", "Location"} {
					if r.Header().Get(hdr) != first.Header().Get(hdr) {
						t.Errorf("%s = %q; want %q", hdr, r.Header().Get(hdr), first.Header().Get(hdr))
					}
				}
			}
			// A key answered before the outcome was kept structured holds
			// the answer's body itself: it replays the same.
			if _, err := h.pool.Exec(context.Background(), `UPDATE idempotency_keys SET response = $1`,
				first.Body.Bytes()); err != nil {
				t.Fatal(err)
			}
			if r := h.post(t, "k1", okBody); r.Code != first.Code || r.Body.String() != first.Body.String() {
				t.Errorf("replay of the answer's body = %d %s; want %d %s", r.Code, r.Body.String(), first.Code, first.Body.String())
			}
			if n := h.count(t, `SELECT count(*) FROM orders`); n != 1 {
				t.Errorf("orders = %d; want 1", n)
			}
		})
	}
}

func TestCreate_KeyReusedWithOtherBody(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	if w := h.post(t, "k1", okBody); w.Code != http.StatusCreated {
		t.Fatalf("first = %d", w.Code)
	}
	other := strings.Replace(okBody, `"quantity":2`, `"quantity":3`, 1)
	wantProblem(t, h.post(t, "k1", other), http.StatusUnprocessableEntity, "idempotency_key_reused")
	if n := h.count(t, `SELECT count(*) FROM orders`); n != 1 {
		t.Errorf("orders = %d; want 1", n)
	}
}

func TestCreate_InProgressTimesOut(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{RequestTimeout: 100 * time.Millisecond, RecoveryAfter: time.Hour})
	id := insertOrder(t, h, "k1", time.Now())
	// insertOrder stored a dummy hash; make it the request's.
	if _, err := h.pool.Exec(context.Background(), `UPDATE idempotency_keys SET request_hash = $1 WHERE key = $2`,
		mustParse(t, okBody).hash(), customerKey("cus_1", "k1")); err != nil {
		t.Fatal(err)
	}
	w := h.post(t, "k1", okBody)
	m := wantProblem(t, w, http.StatusConflict, "idempotency_in_progress")
	if w.Header().Get("Retry-After") != "1" || m["order_id"] != id {
		t.Errorf("Retry-After = %q, order_id = %v", w.Header().Get("Retry-After"), m["order_id"])
	}
}

func mustParse(t *testing.T, body string) CreateRequest {
	t.Helper()
	r, err := parseCreate([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCreate_ConcurrentDuplicates(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	// A slow reservation keeps the original running while the duplicates arrive.
	h.inv.set(func(f *fakeInventory) { f.reserveDelay = 200 * time.Millisecond })
	const n = 20
	var wg sync.WaitGroup
	results := make([]*httptest.ResponseRecorder, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			results[i] = h.post(t, "same-key", okBody)
		})
	}
	close(start)
	wg.Wait()

	originals := 0
	for i, r := range results {
		if r.Code != http.StatusCreated {
			t.Errorf("response %d = %d %s; want 201", i, r.Code, r.Body.String())
			continue
		}
		if r.Body.String() != results[0].Body.String() {
			t.Errorf("response %d body differs:\n%s\n%s", i, r.Body.String(), results[0].Body.String())
		}
		if r.Header().Get("Idempotent-Replayed") != "true" {
			originals++
		}
	}
	if originals != 1 {
		t.Errorf("%d original responses; want 1 (the rest replayed)", originals)
	}
	if got := h.count(t, `SELECT count(*) FROM orders`); got != 1 {
		t.Errorf("orders = %d; want 1", got)
	}
	if got := len(h.pay.Captures()); got != 1 {
		t.Errorf("captures = %d; want 1", got)
	}
}

func TestCreate_BadInput(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	items := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf(`{"sku":"SKU-%d","quantity":1}`, i)
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	body := func(items string) string {
		return `{"customer_id":"cus_1","items":` + items + `,"payment_method":"pm_card_ok"}`
	}
	tests := []struct {
		name        string
		key         string
		contentType string
		body        string
		status      int
		code        string
		field       string // expected key of the errors map
	}{
		{name: "missing key", body: okBody, status: 400, code: "missing_idempotency_key"},
		{name: "key too long", key: strings.Repeat("k", 256), body: okBody, status: 400, code: "validation_failed", field: "Idempotency-Key"},
		{name: "bad json", key: "k", body: `{"customer_id":`, status: 400, code: "bad_json"},
		{name: "not json", key: "k", body: `hello`, status: 400, code: "bad_json"},
		{name: "empty body", key: "k", body: ``, status: 400, code: "bad_json"},
		{name: "two objects", key: "k", body: okBody + okBody, status: 400, code: "bad_json"},
		{name: "unknown field", key: "k", body: `{"customer_id":"c","coupon":"x"}`, status: 400, code: "unknown_field", field: "coupon"},
		{name: "wrong type", key: "k", body: body(`[{"sku":"A","quantity":"2"}]`), status: 400, code: "validation_failed"},
		{name: "fractional quantity", key: "k", body: body(`[{"sku":"A","quantity":1.5}]`), status: 400, code: "validation_failed"},
		{name: "form body", key: "k", contentType: "application/x-www-form-urlencoded", body: "a=b", status: 415, code: "unsupported_media_type"},
		{name: "too large", key: "k", body: `{"customer_id":"` + strings.Repeat("x", 70<<10) + `"}`, status: 413, code: "body_too_large"},
		{name: "another customer", key: "k", body: `{"customer_id":"cus_2","items":[{"sku":"A","quantity":1}],"payment_method":"pm"}`, status: 403, code: "customer_mismatch"},
		{name: "long customer", key: "k", body: `{"customer_id":"` + strings.Repeat("c", 65) + `","items":[{"sku":"A","quantity":1}],"payment_method":"pm"}`, status: 400, code: "validation_failed", field: "customer_id"},
		{name: "bad email", key: "k", body: `{"customer_id":"c","email":"nope","items":[{"sku":"A","quantity":1}],"payment_method":"pm"}`, status: 400, code: "validation_failed", field: "email"},
		{name: "display-name email", key: "k", body: `{"customer_id":"c","email":"A <a@example.com>","items":[{"sku":"A","quantity":1}],"payment_method":"pm"}`, status: 400, code: "validation_failed", field: "email"},
		{name: "no items", key: "k", body: body(`[]`), status: 400, code: "validation_failed", field: "items"},
		{name: "null items", key: "k", body: body(`null`), status: 400, code: "validation_failed", field: "items"},
		{name: "51 items", key: "k", body: body(items(51)), status: 400, code: "validation_failed", field: "items"},
		{name: "NUL in customer", key: "k", body: `{"customer_id":"c\u0000","items":[{"sku":"A","quantity":1}],"payment_method":"pm"}`, status: 400, code: "validation_failed", field: "customer_id"},
		{name: "control char in sku", key: "k", body: body(`[{"sku":"A\n","quantity":1}]`), status: 400, code: "validation_failed", field: "items[0].sku"},
		{name: "missing sku", key: "k", body: body(`[{"quantity":1}]`), status: 400, code: "validation_failed", field: "items[0].sku"},
		{name: "missing quantity", key: "k", body: body(`[{"sku":"A"}]`), status: 400, code: "validation_failed", field: "items[0].quantity"},
		{name: "quantity 0", key: "k", body: body(`[{"sku":"A","quantity":0}]`), status: 400, code: "validation_failed", field: "items[0].quantity"},
		{name: "quantity 1001", key: "k", body: body(`[{"sku":"A","quantity":1001}]`), status: 400, code: "validation_failed", field: "items[0].quantity"},
		{name: "negative quantity", key: "k", body: body(`[{"sku":"A","quantity":-1}]`), status: 400, code: "validation_failed", field: "items[0].quantity"},
		{name: "duplicate sku", key: "k", body: body(`[{"sku":"A","quantity":1},{"sku":"A","quantity":2}]`), status: 400, code: "validation_failed", field: "items[1].sku"},
		{name: "no payment method", key: "k", body: `{"customer_id":"c","items":[{"sku":"A","quantity":1}]}`, status: 400, code: "validation_failed", field: "payment_method"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/v1/orders", strings.NewReader(tt.body))
			ct := tt.contentType
			if ct == "" {
				ct = "application/json"
			}
			r.Header.Set("Content-Type", ct)
			if tt.key != "" {
				r.Header.Set("Idempotency-Key", tt.key)
			}
			w := httptest.NewRecorder()
			h.h.ServeHTTP(w, r)
			m := wantProblem(t, w, tt.status, tt.code)
			if tt.field != "" {
				errs, _ := m["errors"].(map[string]any)
				if _, ok := errs[tt.field]; !ok {
					t.Errorf("errors = %v; want a problem for %s", m["errors"], tt.field)
				}
			}
		})
	}
	if n := h.count(t, `SELECT (SELECT count(*) FROM orders) + (SELECT count(*) FROM idempotency_keys)`); n != 0 {
		t.Errorf("bad input stored %d rows", n)
	}
	if len(h.inv.Calls()) != 0 || len(h.pay.Captures()) != 0 {
		t.Errorf("bad input reached a downstream service")
	}
}

func TestList_Pagination(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	var want []string // newest first
	for i := range 5 {
		want = append([]string{h.confirmed(t, fmt.Sprintf("k%d", i)).ID}, want...)
	}
	other := strings.Replace(okBody, "cus_1", "cus_2", 1)
	h.caller = customerCus2
	if w := h.post(t, "other", other); w.Code != http.StatusCreated {
		t.Fatalf("create other = %d", w.Code)
	}
	h.caller = customerCus1

	for _, limit := range []int{1, 2, 4, 5, 100} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			var got []string
			for _, o := range h.pages(t, fmt.Sprintf("/v1/orders?customer_id=cus_1&limit=%d", limit), "orders", 10) {
				got = append(got, o["id"].(string))
				if items, _ := o["items"].([]any); len(items) != 2 {
					t.Errorf("order %v has %d items; want 2", o["id"], len(items))
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("orders (-want +got):\n%s", diff)
			}
		})
	}

	// Another customer's list is refused; an operator may read any; bad
	// parameters.
	wantProblem(t, h.do(t, http.MethodGet, "/v1/orders?customer_id=nobody"), http.StatusForbidden, "customer_mismatch")
	h.caller = operator
	if w := h.do(t, http.MethodGet, "/v1/orders?customer_id=nobody"); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"orders":[]`) {
		t.Errorf("operator, unknown customer = %d %s", w.Code, w.Body.String())
	}
	wantProblem(t, h.do(t, http.MethodGet, "/v1/orders"), http.StatusBadRequest, "validation_failed")
	h.caller = customerCus1
	for _, q := range []string{"customer_id=cus_1&limit=0", "customer_id=cus_1&limit=101", "customer_id=cus_1&limit=x"} {
		wantProblem(t, h.do(t, http.MethodGet, "/v1/orders?"+q), http.StatusBadRequest, "validation_failed")
	}
	for _, c := range []string{"!!!", "bm90LWEtY3Vyc29y", encodeCursor(Cursor{ID: "x"})} {
		wantProblem(t, h.do(t, http.MethodGet, "/v1/orders?customer_id=cus_1&cursor="+c), http.StatusBadRequest, "bad_cursor")
	}
}

// pages GETs path, then path with each next_cursor it answers, until the
// last page, and returns the elements of every page's list member in
// order. An empty page, or more than maxPages, fails the test: no cursor
// may lead to an empty page, and pagination must end.
func (h *harness) pages(t *testing.T, path, list string, maxPages int) []map[string]any {
	t.Helper()
	var all []map[string]any
	cursor := ""
	for n := 1; ; n++ {
		if n > maxPages {
			t.Fatalf("%s: more than %d pages", path, maxPages)
		}
		w := h.do(t, http.MethodGet, path+"&cursor="+url.QueryEscape(cursor))
		if w.Code != http.StatusOK {
			t.Fatalf("%s page %d = %d %s", path, n, w.Code, w.Body)
		}
		page := decodeMap(t, w)
		elems, _ := page[list].([]any)
		if len(elems) == 0 {
			t.Fatalf("%s page %d is empty (cursor %q): a cursor led to an empty page", path, n, cursor)
		}
		for _, e := range elems {
			m, _ := e.(map[string]any)
			all = append(all, m)
		}
		if cursor, _ = page["next_cursor"].(string); cursor == "" {
			return all
		}
	}
}

func TestCursor_RoundTrip(t *testing.T) {
	c := Cursor{CreatedAt: time.Now().UTC().Truncate(time.Microsecond), ID: "0190a000-0000-7000-8000-000000000001"}
	got, err := decodeCursor(encodeCursor(c))
	if err != nil || !got.CreatedAt.Equal(c.CreatedAt) || got.ID != c.ID {
		t.Errorf("decodeCursor(encodeCursor(%v)) = %v, %v", c, got, err)
	}
	if slices.Contains([]string{encodeCursor(c)}, "") {
		t.Error("empty cursor")
	}
}

// TestMetrics_OrdersCountedWhereDecided: every order is counted once, in
// orderflow_orders_total and orderflow_saga_duration_seconds, with its final
// status, where that status is decided: in the saga for the answered ones,
// in the recovery loop for a dead saga. A replay is not counted again.
func TestMetrics_OrdersCountedWhereDecided(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{RecoveryAfter: time.Minute})
	steps := []struct {
		key    string
		setup  func()
		status int
	}{
		{"ok", func() {}, http.StatusCreated},
		{"ok", func() {}, http.StatusCreated}, // the replay
		{"declined", func() {
			h.pay.set(func(f *fakePayments) { f.captureErr = &DeclinedError{DeclineCode: "card_declined"} })
		}, http.StatusPaymentRequired},
		{"rejected", func() {
			h.pay.set(func(f *fakePayments) { f.captureErr = nil })
			h.inv.set(func(f *fakeInventory) { f.reserveErr = &RejectedError{Code: "out_of_stock", SKUs: []string{"SKU-2"}} })
		}, http.StatusConflict},
		{"down", func() { h.inv.set(func(f *fakeInventory) { f.reserveErr = errDown }) }, http.StatusServiceUnavailable},
	}
	for _, st := range steps {
		st.setup()
		if w := h.post(t, st.key, okBody); w.Code != st.status {
			t.Fatalf("POST %s = %d %s; want %d", st.key, w.Code, w.Body, st.status)
		}
	}
	insertOrder(t, h, "dead", time.Now().Add(-time.Hour))
	h.recover(t)

	want := map[string]int64{StatusConfirmed: 1, StatusPaymentFailed: 1, StatusRejected: 1, StatusFailed: 2}
	if diff := cmp.Diff(want, h.metric(t, "orderflow.orders", "status")); diff != "" {
		t.Errorf("orderflow.orders by status (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, h.metric(t, "orderflow.saga.duration", "status")); diff != "" {
		t.Errorf("orderflow.saga.duration counts by status (-want +got):\n%s", diff)
	}
}

// TestCreate_KeysPerCustomer: the same Idempotency-Key from two customers
// is two orders, not a replay or a 422 of the other's.
func TestCreate_KeysPerCustomer(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	first := h.post(t, "shared-key", okBody)
	if first.Code != http.StatusCreated {
		t.Fatalf("cus_1 = %d %s", first.Code, first.Body)
	}
	h.caller = customerCus2
	second := h.post(t, "shared-key", strings.Replace(okBody, `"customer_id":"cus_1",`, "", 1))
	if second.Code != http.StatusCreated || second.Header().Get("Idempotent-Replayed") != "" {
		t.Fatalf("cus_2 with cus_1's key = %d %s (replayed %q); want a new 201", second.Code, second.Body, second.Header().Get("Idempotent-Replayed"))
	}
	if a, b := decodeOrder(t, first).ID, decodeOrder(t, second).ID; a == b {
		t.Errorf("both customers got order %s", a)
	}
}

// TestHostileInputs: values that once reached the database as 500s are
// answered 4xx and change nothing.
func TestHostileInputs(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	id := h.confirmed(t, "k-hostile").ID
	h.caller = operator
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/v1/orders?customer_id=%FF", 400},
		{"GET", "/v1/orders?customer_id=a%00b", 400},
		{"GET", "/v1/orders/urn:uuid:" + id, 404},
		{"GET", "/v1/orders/" + strings.ToUpper(id), 404},
		{"GET", "/v1/orders/%7B" + id + "%7D", 404},
		{"GET", "/admin/compensations?cursor=%FF", 400},
		{"GET", "/admin/compensations?cursor=a%00b", 400},
		{"GET", "/admin/compensations?limit=%00", 400},
		{"POST", "/admin/compensations/urn:uuid:" + id + "/retry", 404},
		{"POST", "/admin/compensations/" + strings.ToUpper(id) + "/retry", 404},
		{"POST", "/admin/compensations/%7B" + id + "%7D/retry", 404},
		{"POST", "/admin/compensations/a%00b/retry", 404},
	} {
		if w := h.do(t, tc.method, tc.path); w.Code != tc.want {
			t.Errorf("%s %s = %d %s; want %d", tc.method, tc.path, w.Code, w.Body, tc.want)
		}
	}
	h.caller = customerCus1
	if w := h.do(t, "POST", "/v1/orders/urn:uuid:"+id+"/cancel"); w.Code != 404 {
		t.Errorf("cancel urn:uuid: = %d; want 404", w.Code)
	}
	if got := h.order(t, id); got.Status != StatusConfirmed {
		t.Errorf("order after hostile calls = %s; want confirmed", got.Status)
	}
}
