package e2e

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestSaga(t *testing.T) {
	s := startStack(t)

	t.Run("happy path", func(t *testing.T) {
		key := newKey()
		before := s.available("SKU-00001")
		r := s.placeOrder(orderBody("cus_happy", "SKU-00001", 2, "pm_card_ok"), key)
		if r.status != http.StatusCreated || r.body["status"] != "confirmed" {
			t.Fatalf("POST /v1/orders = %d %s; want 201 confirmed", r.status, r.raw)
		}
		id := r.body["id"].(string)
		if loc := r.header.Get("Location"); loc != "/v1/orders/"+id {
			t.Errorf("Location = %q; want /v1/orders/%s", loc, id)
		}
		if r.body["payment_id"] == nil || r.body["total_cents"].(float64) <= 0 {
			t.Errorf("order has no payment or no total: %s", r.raw)
		}
		if got := s.available("SKU-00001"); got != before-2 {
			t.Errorf("available = %d; want %d", got, before-2)
		}
		replay := s.placeOrder(orderBody("cus_happy", "SKU-00001", 2, "pm_card_ok"), key)
		if replay.status != http.StatusCreated || replay.header.Get("Idempotent-Replayed") != "true" || string(replay.raw) != string(r.raw) {
			t.Errorf("replay = %d %q %s; want the first response replayed", replay.status, replay.header.Get("Idempotent-Replayed"), replay.raw)
		}
		reused := s.placeOrder(orderBody("cus_happy", "SKU-00001", 3, "pm_card_ok"), key)
		if reused.status != http.StatusUnprocessableEntity || reused.body["code"] != "idempotency_key_reused" {
			t.Errorf("same key, other body = %d %s; want 422 idempotency_key_reused", reused.status, reused.raw)
		}
		s.waitNotifications(t, id, 1, "order_confirmed")
	})

	t.Run("out of stock", func(t *testing.T) {
		s.setStock("SKU-00002", 1)
		r := s.placeOrder(orderBody("cus_oos", "SKU-00002", 2, "pm_card_ok"), newKey())
		if r.status != http.StatusConflict || r.body["code"] != "out_of_stock" {
			t.Fatalf("POST = %d %s; want 409 out_of_stock", r.status, r.raw)
		}
		skus, _ := r.body["skus"].([]any)
		if len(skus) != 1 || skus[0] != "SKU-00002" {
			t.Errorf("skus = %v; want [SKU-00002]", r.body["skus"])
		}
		s.wantStatus(t, r, "rejected")
		if got := s.available("SKU-00002"); got != 1 {
			t.Errorf("available = %d; want 1 (nothing reserved)", got)
		}
	})

	t.Run("unknown sku", func(t *testing.T) {
		r := s.placeOrder(orderBody("cus_unknown", "SKU-99999", 1, "pm_card_ok"), newKey())
		if r.status != http.StatusConflict || r.body["code"] != "unknown_sku" {
			t.Fatalf("POST = %d %s; want 409 unknown_sku", r.status, r.raw)
		}
		s.wantStatus(t, r, "rejected")
	})

	t.Run("payment declined", func(t *testing.T) {
		for _, method := range []string{"pm_card_declined", "pm_card_insufficient_funds"} {
			before := s.available("SKU-00003")
			r := s.placeOrder(orderBody("cus_declined", "SKU-00003", 1, method), newKey())
			if r.status != http.StatusPaymentRequired || r.body["code"] != "payment_declined" {
				t.Fatalf("%s: POST = %d %s; want 402 payment_declined", method, r.status, r.raw)
			}
			s.wantStatus(t, r, "payment_failed")
			if got := s.available("SKU-00003"); got != before {
				t.Errorf("%s: available = %d; want %d (reservation released)", method, got, before)
			}
			s.waitNotifications(t, r.body["order_id"].(string), 0, "payment_failed")
		}
	})

	t.Run("provider down", func(t *testing.T) {
		s.setProvider(0, 0, true)
		before := s.available("SKU-00004")
		key := newKey()
		body := orderBody("cus_outage", "SKU-00004", 1, "pm_card_ok")
		r := s.placeOrder(body, key)
		if r.status != http.StatusServiceUnavailable || r.body["code"] != "dependency_unavailable" || r.header.Get("Retry-After") == "" {
			t.Fatalf("POST = %d %s (Retry-After %q); want 503 dependency_unavailable with Retry-After", r.status, r.raw, r.header.Get("Retry-After"))
		}
		s.wantStatus(t, r, "failed")
		if got := s.available("SKU-00004"); got != before {
			t.Errorf("available = %d; want %d (reservation released)", got, before)
		}
		s.setProvider(0, 0, false)
		// The breakers opened during the outage; a client retries with the
		// same key after Retry-After until the half-open probe closes them.
		var retry response
		eventually(t, 30*time.Second, "a retry with the same key after the outage is confirmed", func() bool {
			retry = s.placeOrder(body, key)
			if retry.status == http.StatusServiceUnavailable {
				if secs, err := strconv.Atoi(retry.header.Get("Retry-After")); err == nil {
					time.Sleep(time.Duration(secs) * time.Second)
				}
				return false
			}
			return true
		})
		if retry.status != http.StatusCreated || retry.body["status"] != "confirmed" {
			t.Errorf("retry with the same key after the outage = %d %s; want 201 confirmed", retry.status, retry.raw)
		}
	})

	t.Run("inventory down", func(t *testing.T) {
		s.stop("inventory")
		start := time.Now()
		r := s.placeOrder(orderBody("cus_invdown", "SKU-00005", 1, "pm_card_ok"), newKey())
		if r.status != http.StatusServiceUnavailable || r.body["code"] != "dependency_unavailable" {
			t.Errorf("POST = %d %s; want 503 dependency_unavailable", r.status, r.raw)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("503 took %v; want a fast answer", d)
		}
		s.start("inventory")
		s.waitHealed(t)
	})

	t.Run("cancel", func(t *testing.T) {
		before := s.available("SKU-00006")
		r := s.placeOrder(orderBody("cus_cancel", "SKU-00006", 3, "pm_card_ok"), newKey())
		if r.status != http.StatusCreated {
			t.Fatalf("POST = %d %s", r.status, r.raw)
		}
		id := r.body["id"].(string)
		for range 2 {
			c := s.do(http.MethodPost, "order", "/v1/orders/"+id+"/cancel", nil, s.as("cus_cancel")...)
			if c.status != http.StatusOK || c.body["status"] != "cancelled" {
				t.Fatalf("cancel = %d %s; want 200 cancelled", c.status, c.raw)
			}
		}
		eventually(t, 10*time.Second, "stock released and payment refunded after cancel", func() bool {
			p := s.do(http.MethodGet, "payment", "/v1/payments/"+r.body["payment_id"].(string), nil)
			return s.available("SKU-00006") == before && p.body["status"] == "refunded"
		})
		s.waitNotifications(t, id, 1, "order_cancelled")
		rejected := s.placeOrder(orderBody("cus_cancel", "SKU-99998", 1, "pm_card_ok"), newKey())
		c := s.do(http.MethodPost, "order", "/v1/orders/"+rejected.body["order_id"].(string)+"/cancel", nil, s.as("cus_cancel")...)
		if c.status != http.StatusConflict {
			t.Errorf("cancel of a rejected order = %d %s; want 409", c.status, c.raw)
		}
	})

	t.Run("40 concurrent orders for 10 units", func(t *testing.T) {
		s.setStock("SKU-00010", 10)
		var wg sync.WaitGroup
		codes := make(chan int, 40)
		for i := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := orderBody("cus_rush", "SKU-00010", 1, "pm_card_ok")
				body["customer_id"] = "cus_rush_" + string(rune('a'+i%26))
				codes <- s.placeOrder(body, newKey()).status
			}()
		}
		wg.Wait()
		close(codes)
		count := map[int]int{}
		for c := range codes {
			count[c]++
		}
		if count[http.StatusCreated] != 10 || count[http.StatusConflict] != 30 {
			t.Errorf("answers = %v; want exactly 10×201 and 30×409", count)
		}
		if got := s.available("SKU-00010"); got != 0 {
			t.Errorf("available = %d; want 0", got)
		}
	})

	t.Run("order process killed mid-saga", func(t *testing.T) {
		s.setProvider(2500, 0, false)
		before := s.available("SKU-00007")
		done := make(chan struct{})
		go func() {
			defer close(done)
			req, _ := http.NewRequest(http.MethodPost, s.url("order", "/v1/orders"), jsonReader(orderBody("cus_killed", "SKU-00007", 1, "pm_card_ok")))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", newKey())
			req.Header.Set("Authorization", "Bearer "+token(t, "cus_killed"))
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		time.Sleep(1200 * time.Millisecond) // reserved, now waiting on the slow provider
		s.kill("order")
		<-done
		s.setProvider(0, 0, false)
		s.start("order")
		var id string
		eventually(t, 30*time.Second, "the interrupted order ends failed", func() bool {
			r := s.do(http.MethodGet, "order", "/v1/orders?customer_id=cus_killed", nil)
			orders, _ := r.body["orders"].([]any)
			if len(orders) != 1 {
				return false
			}
			o := orders[0].(map[string]any)
			id = o["id"].(string)
			return o["status"] == "failed"
		})
		eventually(t, 30*time.Second, "the interrupted order holds no stock and no captured payment", func() bool {
			p := s.do(http.MethodGet, "payment", "/v1/payments?order_id="+id, nil)
			payments, _ := p.body["payments"].([]any)
			for _, x := range payments {
				if x.(map[string]any)["status"] == "captured" {
					return false
				}
			}
			return s.available("SKU-00007") == before
		})
	})

	t.Run("invariants", func(t *testing.T) {
		s.checkInvariants(t)
	})
}

// waitHealed places probe orders, as a client would, honouring Retry-After,
// until one is confirmed: the breakers that opened during a fault have
// closed again.
func (s *stack) waitHealed(t *testing.T) {
	t.Helper()
	eventually(t, 30*time.Second, "orders are confirmed again after the fault", func() bool {
		r := s.placeOrder(orderBody("cus_probe", "SKU-00099", 1, "pm_card_ok"), newKey())
		if r.status == http.StatusServiceUnavailable {
			if secs, err := strconv.Atoi(r.header.Get("Retry-After")); err == nil {
				time.Sleep(time.Duration(secs) * time.Second)
			}
		}
		return r.status == http.StatusCreated
	})
}

func (s *stack) wantStatus(t *testing.T, r response, want string) {
	t.Helper()
	id, _ := r.body["order_id"].(string)
	if id == "" {
		t.Fatalf("problem body has no order_id: %s", r.raw)
	}
	got := s.do(http.MethodGet, "order", "/v1/orders/"+id, nil)
	if got.status != http.StatusOK || got.body["status"] != want {
		t.Errorf("GET order %s = %d %s; want status %s", id, got.status, got.raw, want)
	}
}

// waitNotifications waits until the order has wantInvoices invoices and
// exactly one e-mail of kind.
func (s *stack) waitNotifications(t *testing.T, orderID string, wantInvoices int, kind string) {
	t.Helper()
	eventually(t, 20*time.Second, "invoice and e-mail for "+orderID, func() bool {
		inv := s.do(http.MethodGet, "notification", "/v1/invoices?order_id="+orderID, nil)
		em := s.do(http.MethodGet, "notification", "/v1/emails?order_id="+orderID, nil)
		invoices, _ := inv.body["invoices"].([]any)
		emails, _ := em.body["emails"].([]any)
		ofKind := 0
		for _, e := range emails {
			if e.(map[string]any)["kind"] == kind {
				ofKind++
			}
		}
		return len(invoices) == wantInvoices && ofKind == 1
	})
}

// checkInvariants reads the four databases: no order is left pending; a
// confirmed order has one captured payment and a committed reservation; a
// failed, rejected or payment_failed order holds no stock and no captured
// payment; no stock is negative.
func (s *stack) checkInvariants(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	conn := func(name string) *pgx.Conn {
		c, err := pgx.Connect(ctx, s.db[name])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(ctx) })
		return c
	}
	orders, inventory, payments := conn("order"), conn("inventory"), conn("payment")
	eventually(t, 30*time.Second, "no order pending and no compensation outstanding", func() bool {
		var n int
		_ = orders.QueryRow(ctx, `SELECT count(*) FROM orders WHERE status = 'pending' OR compensate_after IS NOT NULL`).Scan(&n)
		return n == 0
	})
	rows, err := orders.Query(ctx, `SELECT id::text, status FROM orders`)
	if err != nil {
		t.Fatal(err)
	}
	type order struct{ id, status string }
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (order, error) {
		var o order
		return o, r.Scan(&o.id, &o.status)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range all {
		var captured int
		if err := payments.QueryRow(ctx, `SELECT count(*) FROM payments WHERE order_id = $1 AND status = 'captured'`, o.id).Scan(&captured); err != nil {
			t.Fatal(err)
		}
		var held int
		if err := inventory.QueryRow(ctx, `SELECT count(*) FROM reservations WHERE order_id = $1 AND status IN ('reserved', 'committed')`, o.id).Scan(&held); err != nil {
			t.Fatal(err)
		}
		switch o.status {
		case "confirmed":
			if captured != 1 || held != 1 {
				t.Errorf("confirmed order %s: %d captured payments, %d live reservations; want 1 and 1", o.id, captured, held)
			}
		case "failed", "rejected", "payment_failed", "cancelled":
			if captured != 0 || held != 0 {
				t.Errorf("%s order %s: %d captured payments, %d live reservations; want none", o.status, o.id, captured, held)
			}
		default:
			t.Errorf("order %s is %s; want a final state", o.id, o.status)
		}
	}
	var negative int
	if err := inventory.QueryRow(ctx, `SELECT count(*) FROM products WHERE available < 0`).Scan(&negative); err != nil {
		t.Fatal(err)
	}
	if negative != 0 {
		t.Errorf("%d products with negative stock", negative)
	}
	if len(all) < 10 {
		t.Errorf("only %d orders in the database; the scenarios above should have made more", len(all))
	}
}
