package payment

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/pkg/auth"
	"github.com/orderflow/orderflow/pkg/authtest"
	"github.com/orderflow/orderflow/pkg/dbtest"
	"github.com/orderflow/orderflow/pkg/resilience"
	"github.com/orderflow/orderflow/pkg/web"
	"github.com/orderflow/orderflow/services/payment/internal/provider"
)

// testToken is the provider's API key and, as a bearer token, an
// operator's (scope orderflow.admin); orderToken is the order service's
// (scope payments), sent by default; otherToken is another client's with
// scope payments.
const (
	testToken  = "secret"
	orderToken = "order"
	otherToken = "other"
)

var testAuthn = authtest.Tokens(map[string]auth.Principal{
	testToken:  {Subject: "orderflow-admin", Scopes: []string{auth.ScopeAdmin}},
	orderToken: {Subject: "orderflow-order", Scopes: []string{auth.ScopePayments, auth.ScopeReservations}},
	otherToken: {Subject: "orderflow-other", Scopes: []string{auth.ScopePayments}},
	"customer": {Subject: "cus_1", Scopes: []string{auth.ScopeOrders}},
})

// testEnv is the payment handler on a fresh database, talking over real HTTP
// to the real provider handler on its own fresh database.
type testEnv struct {
	sim      *provider.Simulator
	provider *httptest.Server
	svc      *Service
	pool     *pgxpool.Pool
	url      string
}

// newTestEnv is newEnv with the default policies around provider attempts
// bounded by providerTimeout.
func newTestEnv(t *testing.T, providerTimeout time.Duration) *testEnv {
	t.Helper()
	return newEnv(t, newGuard(providerTimeout), Config{}, nil)
}

// newEnv is payment with cfg, its provider client behind guard, in front of
// the real provider handler, wrapped by wrap when it is not nil.
func newEnv(t *testing.T, guard *resilience.Downstream, cfg Config, wrap func(http.Handler) http.Handler) *testEnv {
	t.Helper()
	fsys, err := migrations.For("provider")
	if err != nil {
		t.Fatal(err)
	}
	store := provider.NewStore(dbtest.NewPool(t, fsys))
	e := &testEnv{sim: provider.NewSimulator(provider.Config{}, store)}
	h := provider.NewHandler(slog.New(slog.DiscardHandler), e.sim, map[string]web.Check{"postgres": store.Ping}, nil, testToken)
	if wrap != nil {
		h = wrap(h)
	}
	e.provider = httptest.NewServer(h)
	t.Cleanup(e.provider.Close)
	e.svc, e.pool, e.url = newPaymentServer(t, NewProviderClient(e.provider.URL, testToken, guard), cfg)
	return e
}

// newGuard is the default policies around provider attempts bounded by
// timeout.
func newGuard(timeout time.Duration) *resilience.Downstream {
	return resilience.New("provider", resilience.DefaultPolicy(timeout), nil, nil)
}

// charges is the number of charges the provider ever made.
func charges(t *testing.T, sim *provider.Simulator) int64 {
	t.Helper()
	tot, err := sim.Totals(context.Background())
	if err != nil {
		t.Fatalf("provider totals: %v", err)
	}
	return tot.Charges
}

// newPaymentServer is payment with cfg over p on a fresh database.
func newPaymentServer(t *testing.T, p Provider, cfg Config) (*Service, *pgxpool.Pool, string) {
	t.Helper()
	fsys, err := migrations.For("payment")
	if err != nil {
		t.Fatal(err)
	}
	pool := dbtest.NewPool(t, fsys)
	log := slog.New(slog.DiscardHandler)
	store := NewStore(pool)
	svc := NewService(store, p, cfg, log)
	srv := httptest.NewServer(NewHandler(log, svc, map[string]web.Check{"postgres": store.Ping}, nil, testAuthn))
	t.Cleanup(srv.Close)
	return svc, pool, srv.URL
}

type result struct {
	status int
	header http.Header
	raw    string
	body   map[string]any
}

func do(t *testing.T, method, url string, header map[string]string, body string) result {
	t.Helper()
	r, err := doErr(method, url, header, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return r
}

// doErr is do without t, for goroutines.
func doErr(method, url string, header map[string]string, body string) (result, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return result{}, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+orderToken)
	for k, v := range header {
		if v == "" {
			req.Header.Del(k)
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return result{}, err
	}
	r := result{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	if len(b) > 0 {
		_ = json.Unmarshal(b, &r.body)
	}
	return r, nil
}

func payBody(orderID string, amount int64, method string) string {
	return `{"order_id":"` + orderID + `","amount_cents":` + jsonInt(amount) + `,"currency":"USD","method":"` + method + `"}`
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

func newOrderID() string { return uuid.Must(uuid.NewV7()).String() }

func key(k string) map[string]string { return map[string]string{"Idempotency-Key": k} }

func countPayments(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM payments`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// wantCounts checks that the provider made charged charges and payment
// recorded as many payments, ever.
func wantCounts(t *testing.T, e *testEnv, charged int64, recorded int) {
	t.Helper()
	if got := charges(t, e.sim); got != charged {
		t.Errorf("provider charges = %d; want %d", got, charged)
	}
	if got := countPayments(t, e.pool); got != recorded {
		t.Errorf("payments = %d; want %d", got, recorded)
	}
}

func countKeys(t *testing.T, pool *pgxpool.Pool, k string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM idempotency_keys WHERE key = $1`, k).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCreate_TestMethods(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, 2*time.Second)
	tests := []struct {
		method      string
		wantStatus  int
		wantCode    string
		wantDecline string
	}{
		{"pm_card_ok", 201, "", ""},
		{"pm_card_declined", 402, "payment_declined", "card_declined"},
		{"pm_card_insufficient_funds", 402, "payment_declined", "insufficient_funds"},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			orderID := newOrderID()
			r := do(t, "POST", e.url+"/v1/payments", key("k-"+tt.method), payBody(orderID, 4200, tt.method))
			if r.status != tt.wantStatus {
				t.Fatalf("POST = %d %s; want %d", r.status, r.raw, tt.wantStatus)
			}
			if tt.wantStatus == 201 {
				if r.header.Get("Content-Type") != "application/json" {
					t.Errorf("Content-Type = %q", r.header.Get("Content-Type"))
				}
				for k, want := range map[string]any{"order_id": orderID, "status": "captured", "amount_cents": 4200.0, "currency": "USD"} {
					if r.body[k] != want {
						t.Errorf("body[%s] = %v; want %v", k, r.body[k], want)
					}
				}
				id, _ := r.body["id"].(string)
				if _, err := uuid.Parse(id); err != nil {
					t.Errorf("id %q is not a UUID", id)
				}
				g := do(t, "GET", e.url+"/v1/payments/"+id, nil, "")
				if g.status != 200 || g.body["status"] != "captured" || g.body["order_id"] != orderID {
					t.Errorf("GET = %d %s", g.status, g.raw)
				}
				return
			}
			if r.header.Get("Content-Type") != "application/problem+json" || r.body["code"] != tt.wantCode ||
				r.body["decline_code"] != tt.wantDecline || r.body["status"] != 402.0 {
				t.Errorf("POST = %s %s; want problem %s/%s", r.header.Get("Content-Type"), r.raw, tt.wantCode, tt.wantDecline)
			}
			l := do(t, "GET", e.url+"/v1/payments?order_id="+orderID, nil, "")
			if l.raw != "{\"payments\":[]}\n" {
				t.Errorf("declined payment was stored: %s", l.raw)
			}
		})
	}
}

func TestCreate_Replay(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, 2*time.Second)
	for _, method := range []string{"pm_card_ok", "pm_card_declined"} {
		t.Run(method, func(t *testing.T) {
			body := payBody(newOrderID(), 990, method)
			first := do(t, "POST", e.url+"/v1/payments", key("replay-"+method), body)
			if first.header.Get("Idempotent-Replayed") != "" {
				t.Errorf("first response carries Idempotent-Replayed")
			}
			if first.status == 201 {
				if g := do(t, "GET", e.url+"/v1/payments/"+first.body["id"].(string), nil, ""); g.raw != first.raw {
					t.Errorf("GET = %s; want the create body %s", g.raw, first.raw)
				}
			}
			// Reordered fields and other whitespace are the same request.
			var m map[string]any
			_ = json.Unmarshal([]byte(body), &m)
			reordered, _ := json.MarshalIndent(m, "", "  ")
			for i, b := range []string{body, string(reordered)} {
				again := do(t, "POST", e.url+"/v1/payments", key("replay-"+method), b)
				if again.status != first.status || again.raw != first.raw {
					t.Errorf("replay #%d = %d %s; want %d %s", i, again.status, again.raw, first.status, first.raw)
				}
				if again.header.Get("Idempotent-Replayed") != "true" {
					t.Errorf("replay #%d has Idempotent-Replayed %q; want true", i, again.header.Get("Idempotent-Replayed"))
				}
				if again.header.Get("Content-Type") != first.header.Get("Content-Type") {
					t.Errorf("replay Content-Type %q; want %q", again.header.Get("Content-Type"), first.header.Get("Content-Type"))
				}
			}
		})
	}
	wantCounts(t, e, 1, 1)
}

func TestCreate_KeyReused(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, 2*time.Second)
	orderID := newOrderID()
	if r := do(t, "POST", e.url+"/v1/payments", key("reuse"), payBody(orderID, 100, "pm_card_ok")); r.status != 201 {
		t.Fatalf("first = %d %s", r.status, r.raw)
	}
	r := do(t, "POST", e.url+"/v1/payments", key("reuse"), payBody(orderID, 101, "pm_card_ok"))
	if r.status != 422 || r.body["code"] != "idempotency_key_reused" || r.header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("reused key = %d %s; want 422 idempotency_key_reused", r.status, r.raw)
	}
	if got := countPayments(t, e.pool); got != 1 {
		t.Errorf("payments = %d; want 1", got)
	}
}

// TestCreate_KeysScopedByCaller: Idempotency-Keys are the caller's own
// (issue 15). Two callers that happen to send the same key with different
// bodies get independent payments, not each other's answer or a 422, and
// each one's retry replays its own payment.
func TestCreate_KeysScopedByCaller(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, 2*time.Second)
	callers := []string{orderToken, otherToken}
	bodies := []string{payBody(newOrderID(), 500, "pm_card_ok"), payBody(newOrderID(), 700, "pm_card_ok")}
	header := func(token string) map[string]string {
		return map[string]string{"Idempotency-Key": "shared", "Authorization": "Bearer " + token}
	}
	first := make([]result, len(callers))
	for i, token := range callers {
		first[i] = do(t, "POST", e.url+"/v1/payments", header(token), bodies[i])
		if first[i].status != 201 || first[i].header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("POST by %s with the shared key = %d %s; want a fresh 201", token, first[i].status, first[i].raw)
		}
	}
	if first[0].body["id"] == first[1].body["id"] {
		t.Errorf("both callers got payment %v; want two payments", first[0].body["id"])
	}
	for i, token := range callers {
		again := do(t, "POST", e.url+"/v1/payments", header(token), bodies[i])
		if again.status != 201 || again.raw != first[i].raw || again.header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("retry by %s = %d %s; want its own replayed 201 %s", token, again.status, again.raw, first[i].raw)
		}
	}
	wantCounts(t, e, 2, 2)
}

func TestCreate_ConcurrentDuplicates(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, 2*time.Second)
	e.sim.Update(provider.Patch{LatencyMS: ptr(50)}) // keep the first in flight while the others arrive
	body := payBody(newOrderID(), 777, "pm_card_ok")
	const n = 20
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r, err := doErr("POST", e.url+"/v1/payments", key("dup"), body)
			if err != nil {
				t.Error(err)
			}
			results[i] = r
		})
	}
	wg.Wait()
	replayed := 0
	for i, r := range results {
		if r.status != 201 || r.raw != results[0].raw {
			t.Errorf("request %d = %d %s; want 201 %s", i, r.status, r.raw, results[0].raw)
		}
		if r.header.Get("Idempotent-Replayed") == "true" {
			replayed++
		}
	}
	if replayed != n-1 {
		t.Errorf("replayed responses = %d; want %d", replayed, n-1)
	}
	wantCounts(t, e, 1, 1)
}

func ptr[T any](v T) *T { return &v }

func TestCreate_ProviderUnavailable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		patch provider.Patch
	}{
		{"outage", provider.Patch{Outage: ptr(true)}},
		{"error rate 1", provider.Patch{ErrorRate: ptr(1.0)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnv(t, 2*time.Second)
			e.sim.Update(tt.patch)
			body := payBody(newOrderID(), 300, "pm_card_ok")
			r := do(t, "POST", e.url+"/v1/payments", key("down"), body)
			if r.status != 503 || r.body["code"] != "provider_unavailable" || r.header.Get("Retry-After") == "" {
				t.Fatalf("POST during %s = %d %s; want 503 provider_unavailable with Retry-After", tt.name, r.status, r.raw)
			}
			// The provider answered 5xx: it may have charged, so the key
			// and its intent stay, pending, for a retry or the reconciler.
			if got := intentState(t, e.pool, "down"); got != IntentPending {
				t.Errorf("intent after 503 = %q; want %q", got, IntentPending)
			}
			e.sim.Update(provider.Patch{Outage: ptr(false), ErrorRate: ptr(0.0)})
			r = do(t, "POST", e.url+"/v1/payments", key("down"), body)
			if r.status != 201 || r.header.Get("Idempotent-Replayed") != "" {
				t.Errorf("retry after recovery = %d %s; want a fresh 201", r.status, r.raw)
			}
			if got := intentState(t, e.pool, "down"); got != IntentCaptured {
				t.Errorf("intent after the retry = %q; want %q", got, IntentCaptured)
			}
			if got := charges(t, e.sim); got != 1 {
				t.Errorf("provider charges = %d; want 1", got)
			}
		})
	}

	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		dead := httptest.NewServer(http.NotFoundHandler())
		dead.Close()
		_, pool, url := newPaymentServer(t, NewProviderClient(dead.URL, testToken, newGuard(time.Second)), Config{})
		r := do(t, "POST", url+"/v1/payments", key("refused"), payBody(newOrderID(), 300, "pm_card_ok"))
		if r.status != 503 || r.body["code"] != "provider_unavailable" {
			t.Errorf("POST with the provider gone = %d %s; want 503 provider_unavailable", r.status, r.raw)
		}
		// Nothing reached the provider, so nothing can have been charged:
		// the key is free again.
		if got := countKeys(t, pool, "refused"); got != 0 {
			t.Errorf("key rows after a refused connection = %d; want 0", got)
		}
	})
}

// intentState is the state of key's payment intent, "" when it has none.
func intentState(t *testing.T, pool *pgxpool.Pool, k string) string {
	t.Helper()
	var state string
	err := pool.QueryRow(context.Background(), `SELECT state FROM payment_intents WHERE key = $1`, k).Scan(&state)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		t.Fatal(err)
	}
	return state
}

func TestCreate_ProviderTimeout(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, 100*time.Millisecond)
	e.sim.Update(provider.Patch{LatencyMS: ptr(60000)})
	body := payBody(newOrderID(), 300, "pm_card_ok")
	r := do(t, "POST", e.url+"/v1/payments", key("slow"), body)
	if r.status != 504 || r.body["code"] != "provider_timeout" {
		t.Fatalf("POST to a slow provider = %d %s; want 504 provider_timeout", r.status, r.raw)
	}
	if got := intentState(t, e.pool, "slow"); got != IntentPending {
		t.Errorf("intent after 504 = %q; want %q", got, IntentPending)
	}
	// The retry takes the parked claim over at once and sends the same
	// provider key.
	e.sim.Update(provider.Patch{LatencyMS: ptr(0)})
	if r := do(t, "POST", e.url+"/v1/payments", key("slow"), body); r.status != 201 {
		t.Errorf("retry after the provider recovered = %d %s; want 201", r.status, r.raw)
	}
	if got := charges(t, e.sim); got != 1 {
		t.Errorf("provider charges = %d; want 1", got)
	}
}

// blockingProvider holds every charge until release is closed, so a test
// can observe a request while it is in progress.
type blockingProvider struct {
	started chan struct{}
	release chan struct{}
	mu      sync.Mutex
	keys    []string
}

func (p *blockingProvider) Charge(ctx context.Context, req ChargeRequest) (string, error) {
	p.mu.Lock()
	p.keys = append(p.keys, req.IdempotencyKey)
	p.mu.Unlock()
	p.started <- struct{}{}
	select {
	case <-p.release:
		return "ch_fake_" + req.IdempotencyKey, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (p *blockingProvider) ChargeByKey(context.Context, string) (ProviderCharge, bool, error) {
	return ProviderCharge{}, false, ErrProviderUnavailable
}

func (p *blockingProvider) Refund(context.Context, string) error { return nil }

func (p *blockingProvider) Admin(context.Context, *ProviderSettings) (ProviderReply, error) {
	return ProviderReply{}, ErrProviderUnavailable
}

func TestCreate_InProgress(t *testing.T) {
	t.Parallel()
	fake := &blockingProvider{started: make(chan struct{}, 1), release: make(chan struct{})}
	_, pool, url := newPaymentServer(t, fake, Config{MaxWait: 100 * time.Millisecond})
	body := payBody(newOrderID(), 300, "pm_card_ok")
	firstc := make(chan result, 1)
	go func() {
		r, err := doErr("POST", url+"/v1/payments", key("busy"), body)
		if err != nil {
			t.Error(err)
		}
		firstc <- r
	}()
	<-fake.started

	r := do(t, "POST", url+"/v1/payments", key("busy"), body)
	if r.status != 409 || r.body["code"] != "idempotency_in_progress" || r.header.Get("Retry-After") != "1" {
		t.Errorf("duplicate while in progress = %d %s (Retry-After %q); want 409 idempotency_in_progress, Retry-After 1",
			r.status, r.raw, r.header.Get("Retry-After"))
	}
	if r := do(t, "POST", url+"/v1/payments", key("busy"), payBody(newOrderID(), 1, "pm_card_ok")); r.status != 422 {
		t.Errorf("other body while in progress = %d; want 422", r.status)
	}

	close(fake.release)
	first := <-firstc
	if first.status != 201 || first.body["status"] != "captured" {
		t.Fatalf("first = %d %s; want 201", first.status, first.raw)
	}
	// The provider is sent the caller's key scoped, the same for both attempts.
	if diff := cmp.Diff([]string{Key{Caller: "orderflow-order", Value: "busy"}.ProviderKey()}, fake.keys); diff != "" {
		t.Errorf("provider idempotency keys (-want +got):\n%s", diff)
	}
	again := do(t, "POST", url+"/v1/payments", key("busy"), body)
	if again.status != 201 || again.raw != first.raw || again.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("after completion = %d %s; want the replayed 201", again.status, again.raw)
	}
	if got := countPayments(t, pool); got != 1 {
		t.Errorf("payments = %d; want 1", got)
	}
}

func TestRefund(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, 2*time.Second)
	created := do(t, "POST", e.url+"/v1/payments", key("refund"), payBody(newOrderID(), 500, "pm_card_ok"))
	id := created.body["id"].(string)

	e.sim.Update(provider.Patch{Outage: ptr(true)})
	r := do(t, "POST", e.url+"/v1/payments/"+id+"/refund", nil, "")
	if r.status != 503 || r.body["code"] != "provider_unavailable" {
		t.Errorf("refund during outage = %d %s; want 503", r.status, r.raw)
	}
	if g := do(t, "GET", e.url+"/v1/payments/"+id, nil, ""); g.body["status"] != "captured" {
		t.Errorf("status after failed refund = %v; want captured", g.body["status"])
	}

	e.sim.Update(provider.Patch{Outage: ptr(false)})
	first := do(t, "POST", e.url+"/v1/payments/"+id+"/refund", nil, "")
	if first.status != 200 || first.body["status"] != "refunded" || first.body["id"] != id {
		t.Fatalf("refund = %d %s; want 200 refunded", first.status, first.raw)
	}
	charge, err := e.sim.Get(context.Background(), first.body["provider_charge_id"].(string))
	if err != nil || charge.Status != provider.StatusRefunded {
		t.Errorf("provider charge = %+v, %v; want refunded", charge, err)
	}
	// An already refunded payment does not call the provider: an outage
	// does not matter.
	e.sim.Update(provider.Patch{Outage: ptr(true)})
	again := do(t, "POST", e.url+"/v1/payments/"+id+"/refund", nil, "")
	if again.status != 200 || again.raw != first.raw {
		t.Errorf("second refund = %d %s; want 200 %s", again.status, again.raw, first.raw)
	}

	for _, bad := range []string{uuid.Must(uuid.NewV7()).String(), "not-a-uuid"} {
		if r := do(t, "POST", e.url+"/v1/payments/"+bad+"/refund", nil, ""); r.status != 404 || r.body["code"] != "not_found" {
			t.Errorf("refund of %s = %d %s; want 404", bad, r.status, r.raw)
		}
	}
}

func TestGetAndList(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, 2*time.Second)
	orderID := newOrderID()
	var ids []string
	for i := range 3 {
		r := do(t, "POST", e.url+"/v1/payments", key("list-"+jsonInt(int64(i))), payBody(orderID, int64(100+i), "pm_card_ok"))
		ids = append(ids, r.body["id"].(string))
	}
	do(t, "POST", e.url+"/v1/payments", key("other"), payBody(newOrderID(), 1, "pm_card_ok"))

	l := do(t, "GET", e.url+"/v1/payments?order_id="+orderID, nil, "")
	var got []string
	for _, p := range l.body["payments"].([]any) {
		got = append(got, p.(map[string]any)["id"].(string))
	}
	want := []string{ids[2], ids[1], ids[0]}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("list newest first (-want +got):\n%s", diff)
	}
	if r := do(t, "GET", e.url+"/v1/payments?order_id="+newOrderID(), nil, ""); r.status != 200 || r.raw != "{\"payments\":[]}\n" {
		t.Errorf("list of an order without payments = %d %s", r.status, r.raw)
	}
	if r := do(t, "GET", e.url+"/v1/payments/"+ids[0], nil, ""); r.status != 200 || r.body["amount_cents"] != 100.0 {
		t.Errorf("GET = %d %s", r.status, r.raw)
	}
	for _, bad := range []string{uuid.Must(uuid.NewV7()).String(), "nope"} {
		if r := do(t, "GET", e.url+"/v1/payments/"+bad, nil, ""); r.status != 404 || r.body["code"] != "not_found" {
			t.Errorf("GET %s = %d %s; want 404", bad, r.status, r.raw)
		}
	}
}

func TestValidation(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, 2*time.Second)
	good := payBody(newOrderID(), 100, "pm_card_ok")
	tests := []struct {
		name       string
		method     string
		path       string
		header     map[string]string
		body       string
		wantStatus int
		wantCode   string
	}{
		{"missing key", "POST", "/v1/payments", nil, good, 400, "validation_failed"},
		{"key too long", "POST", "/v1/payments", key(strings.Repeat("k", 256)), good, 400, "validation_failed"},
		{"key not text", "POST", "/v1/payments", key("k\xff"), good, 400, "validation_failed"},
		{"bad json", "POST", "/v1/payments", key("v1"), `{"order_id":`, 400, "bad_json"},
		{"empty body", "POST", "/v1/payments", key("v2"), ``, 400, "bad_json"},
		{"unknown field", "POST", "/v1/payments", key("v3"), `{"order_id":"x","extra":1}`, 400, "unknown_field"},
		{"wrong type", "POST", "/v1/payments", key("v4"), `{"amount_cents":"100"}`, 400, "validation_failed"},
		{"bad order id", "POST", "/v1/payments", key("v5"), payBody("order-1", 100, "pm_card_ok"), 400, "validation_failed"},
		{"zero amount", "POST", "/v1/payments", key("v6"), payBody(newOrderID(), 0, "pm_card_ok"), 400, "validation_failed"},
		{"bad currency", "POST", "/v1/payments", key("v7"), `{"order_id":"` + newOrderID() + `","amount_cents":1,"currency":"DOLLAR","method":"pm_card_ok"}`, 400, "validation_failed"},
		{"no method", "POST", "/v1/payments", key("v8"), payBody(newOrderID(), 1, ""), 400, "validation_failed"},
		{"not json", "POST", "/v1/payments", map[string]string{"Idempotency-Key": "v9", "Content-Type": "text/plain"}, good, 415, "unsupported_media_type"},
		{"too large", "POST", "/v1/payments", key("v10"), `{"method":"` + strings.Repeat("x", 70000) + `"}`, 413, "body_too_large"},
		{"list without order", "GET", "/v1/payments", nil, "", 400, "validation_failed"},
		{"list bad order", "GET", "/v1/payments?order_id=1", nil, "", 400, "validation_failed"},
		{"unknown route", "GET", "/v1/nope", nil, "", 404, "not_found"},
		{"wrong method", "DELETE", "/v1/payments", nil, "", 405, "method_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, tt.method, e.url+tt.path, tt.header, tt.body)
			if r.status != tt.wantStatus || r.body["code"] != tt.wantCode {
				t.Errorf("%s %s = %d %s; want %d %s", tt.method, tt.path, r.status, r.raw, tt.wantStatus, tt.wantCode)
			}
			if r.header.Get("Content-Type") != "application/problem+json" || r.body["type"] == nil ||
				r.body["title"] == nil || r.body["detail"] == nil || r.body["status"] != float64(tt.wantStatus) {
				t.Errorf("%s %s: not a problem body: %s", tt.method, tt.path, r.raw)
			}
		})
	}
	wantCounts(t, e, 0, 0)
}

func TestAdminProvider(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, 2*time.Second)
	auth := map[string]string{"Authorization": "Bearer " + testToken}

	for _, h := range []map[string]string{{"Authorization": ""}, {"Authorization": "Bearer wrong"}} {
		r := do(t, "PUT", e.url+"/admin/provider", h, `{"outage":true}`)
		if r.status != 401 || r.body["code"] != "unauthorized" {
			t.Errorf("PUT with %v = %d %s; want 401", h, r.status, r.raw)
		}
		if r := do(t, "GET", e.url+"/admin/provider", h, ""); r.status != 401 {
			t.Errorf("GET with %v = %d; want 401", h, r.status)
		}
	}
	// The order service's token (scope payments) is no operator's.
	if r := do(t, "PUT", e.url+"/admin/provider", nil, `{"outage":true}`); r.status != 403 || r.body["code"] != "insufficient_scope" {
		t.Errorf("PUT with the order service's token = %d %s; want 403 insufficient_scope", r.status, r.raw)
	}
	if got := e.sim.Config(); got != (provider.Config{}) {
		t.Fatalf("provider config after unauthorized calls = %+v", got)
	}

	for _, body := range []string{`{"latency_ms":-1}`, `{"error_rate":2}`, `{"outage":1}`, `{"nope":true}`, `[`} {
		r := do(t, "PUT", e.url+"/admin/provider", auth, body)
		if r.status != 400 || r.body["code"] == nil {
			t.Errorf("PUT %s = %d %s; want 400 problem", body, r.status, r.raw)
		}
	}
	if got := e.sim.Config(); got != (provider.Config{}) {
		t.Fatalf("provider config after bad calls = %+v", got)
	}

	r := do(t, "PUT", e.url+"/admin/provider", auth, `{"latency_ms":250,"error_rate":0.5,"outage":true}`)
	want := map[string]any{"latency_ms": 250.0, "error_rate": 0.5, "outage": true}
	if r.status != 200 || !cmp.Equal(r.body, want) {
		t.Errorf("PUT = %d %s; want 200 %v", r.status, r.raw, want)
	}
	if got := e.sim.Config(); got != (provider.Config{LatencyMS: 250, ErrorRate: 0.5, Outage: true}) {
		t.Errorf("provider config = %+v", got)
	}
	if r := do(t, "GET", e.url+"/admin/provider", auth, ""); r.status != 200 || !cmp.Equal(r.body, want) {
		t.Errorf("GET = %d %s; want %v", r.status, r.raw, want)
	}
	// Zero values are sent, not dropped.
	if r := do(t, "PUT", e.url+"/admin/provider", auth, `{"latency_ms":0,"error_rate":0,"outage":false}`); r.status != 200 {
		t.Errorf("reset = %d %s", r.status, r.raw)
	}
	if got := e.sim.Config(); got != (provider.Config{}) {
		t.Errorf("provider config after reset = %+v", got)
	}

	e.provider.Close()
	if r := do(t, "PUT", e.url+"/admin/provider", auth, `{"outage":false}`); r.status != 503 || r.body["code"] != "provider_unavailable" {
		t.Errorf("PUT with the provider gone = %d %s; want 503", r.status, r.raw)
	}
}

func TestProbes(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, 2*time.Second)
	e.sim.Update(provider.Patch{Outage: ptr(true)})
	for _, p := range []string{"/healthz", "/readyz"} {
		if r := do(t, "GET", e.url+p, nil, ""); r.status != 200 {
			t.Errorf("GET %s during a provider outage = %d %s; want 200", p, r.status, r.raw)
		}
	}
}

// TestAuthorization: only the order service's token moves money; a
// customer's token or none changes nothing.
func TestAuthorization(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, 2*time.Second)
	key := map[string]string{"Idempotency-Key": "auth-1"}
	r := do(t, "POST", e.url+"/v1/payments", key, `{"order_id":"`+uuid.NewString()+`","amount_cents":100,"currency":"EUR","method":"pm_card_ok"}`)
	if r.status != 201 {
		t.Fatalf("capture = %d %s", r.status, r.raw)
	}
	id := r.body["id"].(string)
	refusals := []struct {
		name   string
		header map[string]string
		want   int
		code   string
	}{
		{"no token", map[string]string{"Authorization": ""}, 401, "unauthorized"},
		{"forged token", map[string]string{"Authorization": "Bearer forged"}, 401, "unauthorized"},
		{"customer token", map[string]string{"Authorization": "Bearer customer"}, 403, "insufficient_scope"},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			if r := do(t, "POST", e.url+"/v1/payments/"+id+"/refund", tc.header, ""); r.status != tc.want || r.body["code"] != tc.code {
				t.Errorf("refund = %d %s; want %d %s", r.status, r.raw, tc.want, tc.code)
			}
			h := map[string]string{"Idempotency-Key": "auth-" + tc.name}
			maps.Copy(h, tc.header)
			if r := do(t, "POST", e.url+"/v1/payments", h, `{"order_id":"`+uuid.NewString()+`","amount_cents":100,"currency":"EUR","method":"pm_card_ok"}`); r.status != tc.want {
				t.Errorf("capture = %d %s; want %d", r.status, r.raw, tc.want)
			}
			if r := do(t, "GET", e.url+"/v1/payments/"+id, tc.header, ""); r.status != tc.want {
				t.Errorf("read = %d %s; want %d", r.status, r.raw, tc.want)
			}
		})
	}
	if r := do(t, "GET", e.url+"/v1/payments/"+id, map[string]string{"Authorization": "Bearer " + testToken}, ""); r.status != 200 || r.body["status"] != "captured" {
		t.Errorf("after the refusals, the admin reads %d %s; want 200 captured", r.status, r.raw)
	}
	if got := charges(t, e.sim); got != 1 {
		t.Errorf("provider charges = %d; want 1", got)
	}
}
