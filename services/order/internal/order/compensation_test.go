package order

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
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

func (h *harness) recover(t *testing.T) {
	t.Helper()
	if err := h.svc.Recover(context.Background()); err != nil {
		t.Fatalf("Recover = %v", err)
	}
}

// cancelledWithFailedRefund is a confirmed order whose cancel could not
// refund: its compensation is left to the recovery loop, due at once.
func cancelledWithFailedRefund(t *testing.T, h *harness) orderResponse {
	t.Helper()
	o := decodeOrder(t, h.post(t, "k1", okBody))
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

	// Counted: the gauge's count and this process's outcomes.
	if n, err := h.svc.CountNeedingAttention(ctx); err != nil || n != 1 {
		t.Errorf("CountNeedingAttention = %d, %v; want 1", n, err)
	}
	if diff := cmp.Diff(map[string]uint64{"done": 0, "retry": 2, "needs_attention": 1}, h.svc.CompensationOutcomes()); diff != "" {
		t.Errorf("CompensationOutcomes (-want +got):\n%s", diff)
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
	if n, err := h.svc.CountNeedingAttention(ctx); err != nil || n != 0 {
		t.Errorf("CountNeedingAttention = %d, %v; want 0", n, err)
	}
	if got := h.svc.CompensationOutcomes()["done"]; got != 1 {
		t.Errorf("done outcomes = %d; want 1", got)
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
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("more pages than compensations")
		}
		w := h.do(t, http.MethodGet, "/admin/compensations?limit=2&cursor="+cursor)
		if w.Code != http.StatusOK {
			t.Fatalf("page %d = %d %s", pages, w.Code, w.Body)
		}
		var page struct {
			Compensations []compensationResponse `json:"compensations"`
			NextCursor    string                 `json:"next_cursor"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &page); err != nil {
			t.Fatal(err)
		}
		if len(page.Compensations) == 0 {
			t.Fatalf("page %d is empty: a cursor led to an empty page", pages)
		}
		for _, c := range page.Compensations {
			got = append(got, c.OrderID)
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
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

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.svc.RunRecovery(ctx, 20*time.Millisecond)
	}()
	defer func() {
		cancel()
		<-done
	}()
	select {
	case <-hung:
	case <-time.After(5 * time.Second):
		t.Fatal("the recovery loop never tried the refund")
	}

	// A saga dies now: its order must be failed, and compensated, in the
	// next rounds, not after the hanging refund's minute.
	stale := insertOrder(t, h, "stale", time.Now().Add(-time.Hour))
	deadline := time.Now().Add(3 * time.Second)
	for {
		got := h.order(t, stale)
		if got.Status == StatusFailed && got.CompensateAfter == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stale order = %+v after 3s while another compensation hangs; want failed and compensated", got)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Shutting down ends the hanging call; the cut-short attempt is not
	// counted, and its lease keeps it for a later retry.
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("RunRecovery did not return after its context ended")
	}
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
