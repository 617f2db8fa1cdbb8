package order

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/orderflow/orderflow/pkg/resilience"
	"github.com/orderflow/orderflow/pkg/servicetest"
)

func TestBackoffCeiling(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		failures      int
		base, ceiling time.Duration
		want          time.Duration
	}{
		{"first failure waits the base", 1, time.Second, 5 * time.Minute, time.Second},
		{"second doubles", 2, time.Second, 5 * time.Minute, 2 * time.Second},
		{"third doubles again", 3, time.Second, 5 * time.Minute, 4 * time.Second},
		{"ninth", 9, time.Second, 5 * time.Minute, 256 * time.Second},
		{"tenth is capped", 10, time.Second, 5 * time.Minute, 5 * time.Minute},
		{"far beyond stays capped", 1000, time.Second, 5 * time.Minute, 5 * time.Minute},
		{"a base above the cap is capped", 1, 10 * time.Second, 2 * time.Second, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := backoffCeiling(tt.failures, tt.base, tt.ceiling); got != tt.want {
				t.Errorf("backoffCeiling(%d, %v, %v) = %v; want %v", tt.failures, tt.base, tt.ceiling, got, tt.want)
			}
		})
	}
}

func TestFullJitter(t *testing.T) {
	t.Parallel()
	for _, d := range []time.Duration{0, time.Nanosecond, time.Second, 5 * time.Minute} {
		var low, high bool
		for range 2000 {
			got := fullJitter(d)
			if got < 0 || got > d {
				t.Fatalf("fullJitter(%v) = %v; want within [0, %v]", d, got, d)
			}
			low = low || got <= d/4
			high = high || got >= d-d/4
		}
		if !low || !high {
			t.Errorf("fullJitter(%v) over 2000 draws: low quarter %v, high quarter %v; want both (full jitter)", d, low, high)
		}
	}
}

// compensationRow is an order's compensation bookkeeping as stored.
type compensationRow struct {
	Attempts       int
	LastError      *string
	Due            *time.Time // compensate_after: the next attempt (or the lease's end), nil when not due
	NeedsAttention bool
}

func (h *harness) compensation(t *testing.T, id string) compensationRow {
	t.Helper()
	var c compensationRow
	const q = `SELECT compensation_attempts, compensation_error, compensate_after, needs_attention_at IS NOT NULL
		FROM orders WHERE id = $1`
	if err := h.pool.QueryRow(context.Background(), q, id).Scan(&c.Attempts, &c.LastError, &c.Due, &c.NeedsAttention); err != nil {
		t.Fatalf("select compensation of %s: %v", id, err)
	}
	return c
}

// makeDue brings a compensation waiting out its backoff forward to now, as
// if the wait had passed.
func (h *harness) makeDue(t *testing.T, id string) {
	t.Helper()
	if _, err := h.pool.Exec(context.Background(),
		`UPDATE orders SET compensate_after = now() WHERE id = $1 AND compensate_after IS NOT NULL`, id); err != nil {
		t.Fatal(err)
	}
}

// cancelledWithFailedRefund is a confirmed order whose cancel could not
// refund: its compensation is left to the recovery loop, due at once.
func cancelledWithFailedRefund(t *testing.T, h *harness) orderResponse {
	t.Helper()
	o := h.confirmed(t, "k1")
	h.pay.set(func(f *fakePayments) { f.refundErr = errDown })
	if c := h.do(t, http.MethodPost, "/v1/orders/"+o.ID+"/cancel"); c.Code != http.StatusOK {
		t.Fatalf("cancel = %d %s", c.Code, c.Body)
	}
	if got := h.compensation(t, o.ID); got.Due == nil || got.Attempts != 0 {
		t.Fatalf("after the failed cancel compensation = %+v; want due, no attempt counted", got)
	}
	return o
}

// TestRecover_FailingRefundBacksOff: each failed attempt of the recovery
// loop waits longer before the next (exponential ceiling, full jitter
// below it), and the attempt after CompensationMaxAttempts−1 failures
// parks the compensation instead of scheduling another.
func TestRecover_FailingRefundBacksOff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// jitter replaces fullJitter; nil keeps it.
		jitter func(time.Duration) time.Duration
		// exact: the due time must be the ceiling itself, not just below it.
		exact bool
	}{
		{name: "full jitter stays below the growing ceiling"},
		{name: "the longest draw is the ceiling, which grows", jitter: func(d time.Duration) time.Duration { return d }, exact: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, Config{CompensationBackoff: time.Second, CompensationMaxBackoff: 3 * time.Second,
				CompensationMaxAttempts: 5})
			var mu sync.Mutex
			var asked []time.Duration
			draw := fullJitter
			if tt.jitter != nil {
				draw = tt.jitter
			}
			h.svc.jitter = func(d time.Duration) time.Duration {
				mu.Lock()
				defer mu.Unlock()
				asked = append(asked, d)
				return draw(d)
			}
			o := cancelledWithFailedRefund(t, h)

			ceilings := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second}
			// The attempt's transaction starts between before and after, so
			// its next attempt is due between before+draw and after+draw.
			const slack = 5 * time.Millisecond // microsecond timestamps, clock reads
			var waits []time.Duration
			for i, ceiling := range ceilings {
				h.makeDue(t, o.ID)
				before := time.Now()
				h.recover(t)
				after := time.Now()
				got := h.compensation(t, o.ID)
				if got.Attempts != i+1 || got.NeedsAttention || got.Due == nil {
					t.Fatalf("after attempt %d compensation = %+v; want %d attempts, due again later", i+1, got, i+1)
				}
				lo, hi := got.Due.Sub(after), got.Due.Sub(before) // the draw is within [lo, hi]
				if hi < -slack || lo > ceiling+slack {
					t.Errorf("attempt %d: next attempt drawn within [%v, %v]; want within [0, %v]", i+1, lo, hi, ceiling)
				}
				if tt.exact && (hi < ceiling-slack || lo > ceiling+slack) {
					t.Errorf("attempt %d: next attempt drawn within [%v, %v]; want the ceiling %v", i+1, lo, hi, ceiling)
				}
				waits = append(waits, hi)
			}
			mu.Lock()
			if diff := cmp.Diff(ceilings, asked); diff != "" {
				t.Errorf("backoff ceilings drawn below (-want +got):\n%s", diff)
			}
			mu.Unlock()
			if tt.exact && !(waits[0] < waits[1] && waits[1] < waits[2]) {
				t.Errorf("waits %v; want them growing up to the cap", waits)
			}

			// The fifth failure is the last: parked, not due any more.
			h.makeDue(t, o.ID)
			h.recover(t)
			got := h.compensation(t, o.ID)
			if got.Attempts != 5 || !got.NeedsAttention || got.Due != nil {
				t.Fatalf("after the last attempt compensation = %+v; want 5 attempts, needs attention, not due", got)
			}
			if got.LastError == nil || !strings.Contains(*got.LastError, "refund "+*o.PaymentID) ||
				!strings.Contains(*got.LastError, errDown.Error()) {
				t.Errorf("last error = %v; want it to name the refund of %s and %q", got.LastError, *o.PaymentID, errDown)
			}
		})
	}
}

// TestRecover_NeedsAttentionListedAndRetried: a parked compensation is
// counted, listed for operators only, left alone by later rounds, and the
// retry route sends it back to the loop, which finishes it once the
// dependency is healthy.
func TestRecover_NeedsAttentionListedAndRetried(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newHarness(t, Config{CompensationBackoff: time.Millisecond, CompensationMaxBackoff: time.Millisecond,
		CompensationMaxAttempts: 3})
	o := cancelledWithFailedRefund(t, h)
	for range 3 {
		h.makeDue(t, o.ID)
		h.recover(t)
	}
	if got := h.compensation(t, o.ID); got.Attempts != 3 || !got.NeedsAttention {
		t.Fatalf("compensation = %+v; want parked after 3 attempts", got)
	}

	// Counted: the gauge's count and this process's attempts.
	if got := h.metric(t, "orderflow.compensation.needs_attention", "")[""]; got != 1 {
		t.Errorf("needs_attention gauge = %d; want 1", got)
	}
	want := map[string]int64{attemptRetry: 2, attemptParked: 1}
	if diff := cmp.Diff(want, h.metric(t, "orderflow.compensation.attempts", "outcome")); diff != "" {
		t.Errorf("compensation attempts counted (-want +got):\n%s", diff)
	}

	// Later rounds leave it alone.
	refunds := len(h.pay.Refunds())
	for range 3 {
		time.Sleep(2 * time.Millisecond) // past any backoff
		h.recover(t)
	}
	if got := len(h.pay.Refunds()); got != refunds {
		t.Errorf("refunds = %d after more rounds; want still %d: a parked compensation is not retried", got, refunds)
	}

	// Only an operator sees the list or retries.
	retryPath := "/admin/compensations/" + o.ID + "/retry"
	h.caller = customerCus1
	for _, r := range []struct{ method, path string }{
		{http.MethodGet, "/admin/compensations"},
		{http.MethodPost, retryPath},
	} {
		wantProblem(t, h.do(t, r.method, r.path), http.StatusForbidden, "insufficient_scope")
	}
	if got := h.compensation(t, o.ID); got.Attempts != 3 || !got.NeedsAttention {
		t.Fatalf("a customer's retry changed the compensation: %+v", got)
	}

	h.caller = operator
	w := h.do(t, http.MethodGet, "/admin/compensations")
	if w.Code != http.StatusOK {
		t.Fatalf("GET /admin/compensations = %d %s", w.Code, w.Body)
	}
	var list struct {
		Compensations []map[string]any `json:"compensations"`
		NextCursor    string           `json:"next_cursor"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Compensations) != 1 || list.NextCursor != "" {
		t.Fatalf("list = %s; want one compensation, no next page", w.Body)
	}
	c := list.Compensations[0]
	if c["order_id"] != o.ID || c["status"] != StatusCancelled || c["attempts"] != 3.0 {
		t.Errorf("listed %v; want order %s, cancelled, 3 attempts", c, o.ID)
	}
	if e, _ := c["last_error"].(string); !strings.Contains(e, errDown.Error()) {
		t.Errorf("last_error = %v; want the refund's error", c["last_error"])
	}
	if s, _ := c["needs_attention_since"].(string); s == "" {
		t.Errorf("needs_attention_since = %v; want a timestamp", c["needs_attention_since"])
	} else if _, err := time.Parse(time.RFC3339, s); err != nil {
		t.Errorf("needs_attention_since = %q: %v", s, err)
	}

	// The operator fixed payment and retries: due at once, attempts reset.
	h.pay.set(func(f *fakePayments) { f.refundErr = nil })
	w = h.do(t, http.MethodPost, retryPath)
	if w.Code != http.StatusAccepted {
		t.Fatalf("retry = %d %s; want 202", w.Code, w.Body)
	}
	if m := decodeMap(t, w); m["attempts"] != 0.0 || m["needs_attention_since"] != nil || m["order_id"] != o.ID {
		t.Errorf("retry answered %v; want the order with 0 attempts, no longer needing attention", m)
	}
	if got := h.compensation(t, o.ID); got.Attempts != 0 || got.NeedsAttention || got.Due == nil || got.Due.After(time.Now()) {
		t.Errorf("after the retry compensation = %+v; want due now, 0 attempts", got)
	}
	h.recover(t)
	if got := h.compensation(t, o.ID); got.Due != nil || got.NeedsAttention {
		t.Errorf("after the retried round compensation = %+v; want done", got)
	}
	if refunds := h.pay.Refunds(); refunds[len(refunds)-1] != *o.PaymentID {
		t.Errorf("refunds = %v; want the last one of %s", refunds, *o.PaymentID)
	}
	if ps, _ := h.pay.ListByOrder(ctx, o.ID); len(ps) != 1 || ps[0].Status != "refunded" {
		t.Errorf("payments = %+v; want refunded", ps)
	}
	if got := h.metric(t, "orderflow.compensation.needs_attention", "")[""]; got != 0 {
		t.Errorf("needs_attention gauge = %d; want 0", got)
	}
	if got := h.metric(t, "orderflow.compensation.attempts", "outcome")[attemptDone]; got != 1 {
		t.Errorf("done attempts = %d; want 1", got)
	}
	w = h.do(t, http.MethodGet, "/admin/compensations")
	if !strings.Contains(w.Body.String(), `"compensations":[]`) {
		t.Errorf("list after the fix = %s; want empty", w.Body)
	}

	// Nothing left to retry; no such order; not an order id.
	wantProblem(t, h.do(t, http.MethodPost, retryPath), http.StatusConflict, "no_compensation")
	wantProblem(t, h.do(t, http.MethodPost, "/admin/compensations/"+uuid.NewString()+"/retry"), http.StatusNotFound, "not_found")
	wantProblem(t, h.do(t, http.MethodPost, "/admin/compensations/urn:uuid:"+o.ID+"/retry"), http.StatusNotFound, "not_found")
}

func TestCompensationList_Pages(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.caller = operator
	// Five parked compensations, one second apart.
	var want []string
	for i := range 5 {
		id := insertOrder(t, h, "parked-"+string(rune('a'+i)), time.Now())
		if _, err := h.pool.Exec(context.Background(), `UPDATE orders SET status = 'failed', compensation_attempts = 10,
			compensation_error = 'release: connection refused',
			needs_attention_at = now() - make_interval(secs => $2::float8) WHERE id = $1`, id, float64(10-i)); err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
	}
	var got []string
	for _, c := range h.pages(t, "/admin/compensations?limit=2", "compensations", 5) {
		got = append(got, c["order_id"].(string))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("listed orders, longest parked first (-want +got):\n%s", diff)
	}
	for _, q := range []string{"limit=0", "limit=101", "limit=x"} {
		wantProblem(t, h.do(t, http.MethodGet, "/admin/compensations?"+q), http.StatusBadRequest, "validation_failed")
	}
	wantProblem(t, h.do(t, http.MethodGet, "/admin/compensations?cursor=%25%25"), http.StatusBadRequest, "bad_cursor")
}

// hangingRefund is a confirmed, cancelled order whose refund the recovery
// loop must make, against a payment service that accepts the refund and
// never answers. hung is told of each refund left hanging.
func hangingRefund(t *testing.T, h *harness) (o orderResponse, hung <-chan string) {
	t.Helper()
	o = cancelledWithFailedRefund(t, h)
	ch := make(chan string, 16)
	h.pay.set(func(f *fakePayments) {
		f.refundErr, f.refundHangs = nil, true
		f.onHang = func(id string) { ch <- id }
	})
	return o, ch
}

// TestRunRecovery_HangingCompensationDoesNotHoldTheLoop: while one
// compensation hangs (its calls have a minute each), the loop keeps
// failing dead sagas and compensating other orders every round.
func TestRunRecovery_HangingCompensationDoesNotHoldTheLoop(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{CallTimeout: time.Minute, RecoveryAfter: time.Minute})
	hanging, hung := hangingRefund(t, h)

	stop := h.runRecovery(t, 20*time.Millisecond)
	select {
	case <-hung:
	case <-time.After(5 * time.Second):
		t.Fatal("the recovery loop never tried the refund")
	}

	// A saga dies now: its order must be failed, and compensated, in the
	// next rounds, not after the hanging refund's minute.
	stale := insertOrder(t, h, "stale", time.Now().Add(-time.Hour))
	servicetest.WaitFor(t, 3*time.Second, "the dead saga's order failed and compensated while another compensation hangs", func() bool {
		got := h.order(t, stale)
		return got.Status == StatusFailed && got.CompensateAfter == nil
	})

	// Shutting down ends the hanging call; the cut-short attempt is not
	// counted, and its lease keeps it for a later retry.
	stop()
	if got := h.compensation(t, hanging.ID); got.Attempts != 0 || got.Due == nil {
		t.Errorf("hanging compensation after shutdown = %+v; want no attempt counted, still outstanding", got)
	}
}

// TestRecover_HangingCompensationTimesOut: a compensation that hangs gets
// CompensationTimeout, then counts as a failed attempt, and the same round
// fails the dead sagas.
func TestRecover_HangingCompensationTimesOut(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{CallTimeout: time.Minute, CompensationTimeout: 200 * time.Millisecond,
		RecoveryAfter: time.Minute})
	hanging, _ := hangingRefund(t, h)
	stale := insertOrder(t, h, "stale", time.Now().Add(-time.Hour))

	start := time.Now()
	h.recover(t)
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Recover took %v with a hanging refund; want about CompensationTimeout (200ms)", elapsed)
	}
	if got := h.order(t, stale); got.Status != StatusFailed {
		t.Errorf("stale order = %s; want failed in the same round", got.Status)
	}
	got := h.compensation(t, hanging.ID)
	if got.Attempts != 1 || got.Due == nil || got.LastError == nil ||
		!strings.Contains(*got.LastError, context.DeadlineExceeded.Error()) {
		t.Errorf("hanging compensation = %+v; want 1 failed attempt (deadline exceeded), retried later", got)
	}
}

// runRecovery runs the recovery loop every interval until stop is called
// (or the test ends); stop fails the test when the loop has not returned 5 s
// after its context ended.
func (h *harness) runRecovery(t *testing.T, interval time.Duration) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.svc.RunRecovery(ctx, interval)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Error("RunRecovery did not return within 5s of its context ending")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// dueCompensations stores n orders that failed with their compensation due
// now, as the recovery loop leaves dead sagas.
func dueCompensations(t *testing.T, h *harness, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = insertOrder(t, h, fmt.Sprintf("due-%d", i), time.Now())
	}
	const q = `UPDATE orders SET status = 'failed', failure_reason = 'saga_timeout', compensate_after = now()
		WHERE id = ANY($1::uuid[])`
	if _, err := h.pool.Exec(context.Background(), q, ids); err != nil {
		t.Fatal(err)
	}
	return ids
}

// outstanding counts the orders whose compensation is not done.
func (h *harness) outstanding(t *testing.T) int {
	t.Helper()
	return h.count(t, `SELECT count(*) FROM orders WHERE compensate_after IS NOT NULL`)
}

// TestRunRecovery_FreedSlotTakesTheNextCompensation: a compensation that
// ends frees its slot for the next due one at once, not a recovery
// interval later. 48 due compensations through 4 slots against an inventory
// answering in 5 ms settle within a few intervals, where one batch of 4 per
// interval would take 12; and never more than 4 run at once.
func TestRunRecovery_FreedSlotTakesTheNextCompensation(t *testing.T) {
	t.Parallel()
	const n, slots, interval, within = 48, 4, time.Second, 6
	h := newHarness(t, Config{CompensationConcurrency: slots, RecoveryAfter: time.Hour})
	h.inv.set(func(f *fakeInventory) { f.releaseDelay = 5 * time.Millisecond })
	dueCompensations(t, h, n)

	h.runRecovery(t, interval)
	deadline := time.Now().Add(within * interval)
	for left := n; left > 0; left = h.outstanding(t) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d compensations outstanding after %d intervals; want none: "+
				"%d slots, each free again within milliseconds", left, n, within, slots)
		}
		time.Sleep(interval / 20)
	}
	if _, most := h.inv.Releasing(); most > slots {
		t.Errorf("%d releases ran at once; want at most CompensationConcurrency (%d)", most, slots)
	}
	if got := h.metric(t, "orderflow.compensation.attempts", "outcome")[attemptDone]; got != n {
		t.Errorf("done attempts = %d; want %d", got, n)
	}
}

// TestRunRecovery_HangingSlotsDoNotDelayFailStale: with every slot held by
// a compensation that hangs and more due behind them, the loop still fails
// each dead saga within a few intervals; stopping it ends the hanging
// attempts without counting them.
func TestRunRecovery_HangingSlotsDoNotDelayFailStale(t *testing.T) {
	t.Parallel()
	const slots, interval = 2, 50 * time.Millisecond
	h := newHarness(t, Config{CallTimeout: time.Minute, RecoveryAfter: time.Minute, CompensationConcurrency: slots})
	h.inv.set(func(f *fakeInventory) { f.releaseDelay = time.Hour })
	dueCompensations(t, h, 2*slots)

	stop := h.runRecovery(t, interval)
	servicetest.WaitFor(t, 5*time.Second, "every slot holds a hanging release", func() bool {
		now, _ := h.inv.Releasing()
		return now == slots
	})
	for i := range 3 {
		stale := insertOrder(t, h, fmt.Sprintf("stale-%d", i), time.Now().Add(-time.Hour))
		servicetest.WaitFor(t, 40*interval, "dead saga "+stale+" failed", func() bool {
			return h.order(t, stale).Status == StatusFailed
		})
	}
	stop()
	if got, want := h.outstanding(t), 2*slots+3; got != want {
		t.Errorf("outstanding compensations after the stop = %d; want %d", got, want)
	}
	if n := h.count(t, `SELECT count(*) FROM orders WHERE compensation_attempts > 0`); n != 0 {
		t.Errorf("%d compensations counted a failed attempt; want none (cut short by the stop)", n)
	}
}

// TestRecover_UnsettledPaymentIsNoFailedAttempt: payment's 503
// payment_unsettled to the list of an order's payments (a charge whose
// outcome the provider has not confirmed yet) means "ask again shortly",
// through the real client: no attempt is counted towards the cap, the
// compensation never parks, and it is due again within about
// CompensationBackoff, not after its lease. Once payment has settled, the
// next round refunds the charge.
func TestRecover_UnsettledPaymentIsNoFailedAttempt(t *testing.T) {
	t.Parallel()
	var settled atomic.Bool
	srv := newHTTPDownstream(t, func(d *httpDownstream, mux *http.ServeMux) {
		mux.Handle("GET /v1/payments", d.serve("list", func(w http.ResponseWriter, r *http.Request) {
			if !settled.Load() {
				w.Header().Set("Retry-After", "1")
				writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": 503, "code": "payment_unsettled"})
				return
			}
			writeJSON(w, http.StatusOK, map[string]any{"payments": []map[string]any{
				{"id": "pay_1", "order_id": r.URL.Query().Get("order_id"), "status": "captured"}}})
		}))
		mux.Handle("POST /v1/payments/{id}/refund", d.serve("refund", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]any{"id": r.PathValue("id"), "status": "refunded"})
		}))
	})
	const maxAttempts, backoff = 3, time.Second
	h := newHarness(t, Config{})
	pay := NewPaymentClient(srv.URL, resilience.New("payment", resilience.DefaultPolicy(time.Second), nil, h.log))
	h.serve(t, h.inv, pay, Config{CompensationMaxAttempts: maxAttempts, CompensationBackoff: backoff})
	id := dueCompensations(t, h, 1)[0]

	for round := range maxAttempts + 1 {
		h.makeDue(t, id)
		before := time.Now()
		h.recover(t)
		got := h.compensation(t, id)
		if got.Attempts != 0 || got.NeedsAttention || got.Due == nil {
			t.Fatalf("round %d with payment unsettled: compensation = %+v; want no attempt counted, not parked, due again", round+1, got)
		}
		if latest := before.Add(2*backoff + time.Second); got.Due.After(latest) {
			t.Errorf("round %d: next ask at %v; want by %v (about CompensationBackoff), not the lease's end", round+1, got.Due, latest)
		}
	}
	if n := srv.count("refund"); n != 0 {
		t.Fatalf("refunds = %d while payment could not list the order's payments; want 0", n)
	}

	settled.Store(true)
	h.makeDue(t, id)
	h.recover(t)
	if got := h.compensation(t, id); got.Due != nil || got.Attempts != 0 {
		t.Errorf("after payment settled compensation = %+v; want done", got)
	}
	if n := srv.count("refund"); n != 1 {
		t.Errorf("refunds = %d after payment settled; want 1", n)
	}
	want := map[string]int64{attemptUnsettled: maxAttempts + 1, attemptDone: 1}
	if diff := cmp.Diff(want, h.metric(t, "orderflow.compensation.attempts", "outcome")); diff != "" {
		t.Errorf("compensation attempts counted (-want +got):\n%s", diff)
	}
}
