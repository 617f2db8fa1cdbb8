package payment

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/pkg/dbtest"
)

func newStoreDB(t *testing.T) (*Store, *pgxpool.Pool) {
	t.Helper()
	fsys, err := migrations.For("payment")
	if err != nil {
		t.Fatal(err)
	}
	pool := dbtest.NewPool(t, fsys)
	return NewStore(pool), pool
}

// testKey is the order service's key k.
func testKey(k string) Key { return Key{Caller: "orderflow-order", Value: k} }

func testIntent(key string) Intent {
	return Intent{ID: uuid.Must(uuid.NewV7()).String(), OrderID: uuid.Must(uuid.NewV7()).String(),
		AmountCents: 100, Currency: "USD", Method: "pm_card_ok", ProviderKey: key}
}

func TestStore_ClaimTakeOverAndFencing(t *testing.T) {
	t.Parallel()
	s, pool := newStoreDB(t)
	ctx := context.Background()
	hash := []byte("h1")

	first, err := s.Claim(ctx, testKey("k"), hash, testIntent("k"), time.Hour)
	if err != nil || !first.Owned || !first.Fresh {
		t.Fatalf("Claim(new key) = %+v, %v; want owned and fresh", first, err)
	}
	if got := intentState(t, pool, "k"); got != IntentPending {
		t.Fatalf("intent of a new claim = %q; want pending", got)
	}
	busy, err := s.Claim(ctx, testKey("k"), hash, testIntent("k"), time.Hour)
	if err != nil || busy.Owned || busy.Answered || string(busy.Hash) != "h1" {
		t.Fatalf("Claim(in-progress key) = %+v, %v; want in progress", busy, err)
	}
	if other, _ := s.Claim(ctx, testKey("k"), []byte("h2"), testIntent("k"), time.Nanosecond); other.Owned {
		t.Fatal("a stale claim was taken over by another request body")
	}

	time.Sleep(5 * time.Millisecond)
	second, err := s.Claim(ctx, testKey("k"), hash, testIntent("k"), time.Millisecond)
	if err != nil || !second.Owned || second.Fresh || !second.Token.After(first.Token) {
		t.Fatalf("Claim(stale key) = %+v, %v; want taken over, not fresh", second, err)
	}
	// The taken-over claim works on the first claim's intent.
	if second.Intent.ID != first.Intent.ID || second.Intent.ProviderKey != "k" {
		t.Errorf("taken-over intent = %+v; want the first one's %+v", second.Intent, first.Intent)
	}

	// The first owner was fenced off: it can neither answer nor release.
	if err := s.Decline(ctx, testKey("k"), first.Token, "card_declined"); !errors.Is(err, errClaimLost) {
		t.Errorf("Decline(old token) = %v; want errClaimLost", err)
	}
	if gone, err := s.Release(ctx, testKey("k"), first.Token); err != nil || gone {
		t.Fatalf("Release(old token) = %v, %v; want false, nil", gone, err)
	}
	if err := s.Decline(ctx, testKey("k"), second.Token, "card_declined"); err != nil {
		t.Fatalf("Decline(new token) = %v", err)
	}
	if got := intentState(t, pool, "k"); got != IntentDeclined {
		t.Errorf("intent after Decline = %q; want declined", got)
	}
	done, err := s.Claim(ctx, testKey("k"), hash, testIntent("k"), time.Millisecond)
	if err != nil || done.Owned || !done.Answered || done.Outcome != (Outcome{DeclineCode: "card_declined"}) {
		t.Errorf("Claim(answered key) = %+v, %v; want the stored decline", done, err)
	}

	// Releasing an unfinished claim frees the key, and its intent, for a
	// retry.
	third, _ := s.Claim(ctx, testKey("k2"), hash, testIntent("k2"), time.Hour)
	if gone, err := s.Release(ctx, testKey("k2"), third.Token); err != nil || !gone {
		t.Fatalf("Release = %v, %v; want true, nil", gone, err)
	}
	if got := intentState(t, pool, "k2"); got != "" {
		t.Errorf("intent after Release = %q; want none", got)
	}
	if again, _ := s.Claim(ctx, testKey("k2"), hash, testIntent("k2"), time.Hour); !again.Owned || !again.Fresh {
		t.Error("released key could not be claimed again")
	}
}

func TestStore_ParkedClaimIsTakenOverAtOnce(t *testing.T) {
	t.Parallel()
	s, _ := newStoreDB(t)
	ctx := context.Background()
	first, err := s.Claim(ctx, testKey("p"), []byte("h"), testIntent("p"), time.Hour)
	if err != nil || !first.Owned {
		t.Fatalf("Claim = %+v, %v", first, err)
	}
	if err := s.Park(ctx, testKey("p"), first.Token); err != nil {
		t.Fatal(err)
	}
	second, err := s.Claim(ctx, testKey("p"), []byte("h"), testIntent("p"), time.Hour)
	if err != nil || !second.Owned || second.Intent.ID != first.Intent.ID {
		t.Fatalf("Claim(parked key) = %+v, %v; want taken over with the same intent", second, err)
	}
	// A takeover unparks: a third request waits for the second.
	if third, _ := s.Claim(ctx, testKey("p"), []byte("h"), testIntent("p"), time.Hour); third.Owned {
		t.Error("a claim taken over from a parked one was taken over again at once")
	}
}

func TestStore_CaptureWithoutTokenSettlesWhoeverHoldsTheClaim(t *testing.T) {
	t.Parallel()
	s, pool := newStoreDB(t)
	ctx := context.Background()
	c, _ := s.Claim(ctx, testKey("c"), []byte("h"), testIntent("c"), time.Hour)
	now := time.Now().UTC().Truncate(time.Microsecond)
	p := c.Intent.payment("ch_1", now)
	if err := s.Capture(ctx, testKey("c"), nil, p); err != nil {
		t.Fatalf("Capture(nil token) = %v", err)
	}
	// The request that held the claim finds it answered.
	if err := s.Capture(ctx, testKey("c"), &c.Token, p); !errors.Is(err, errClaimLost) {
		t.Errorf("Capture after it was settled = %v; want errClaimLost", err)
	}
	if got := intentState(t, pool, "c"); got != IntentCaptured {
		t.Errorf("intent = %q; want captured", got)
	}
	if got, err := s.Get(ctx, p.ID); err != nil || got.ProviderChargeID != "ch_1" || got.Status != StatusCaptured {
		t.Errorf("Get = %+v, %v; want the captured payment", got, err)
	}
}

func TestStore_PendingRipeness(t *testing.T) {
	t.Parallel()
	s, pool := newStoreDB(t)
	ctx := context.Background()
	old, _ := s.Claim(ctx, testKey("old"), []byte("h"), testIntent("old"), time.Hour)
	young, _ := s.Claim(ctx, testKey("young"), []byte("h"), testIntent("young"), time.Hour)
	answered, _ := s.Claim(ctx, testKey("answered"), []byte("h"), testIntent("answered"), time.Hour)
	if err := s.Decline(ctx, testKey("answered"), answered.Token, "card_declined"); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE idempotency_keys SET created_at = created_at - interval '1 hour' WHERE key IN ('old', 'answered')`); err != nil {
		t.Fatal(err)
	}
	got, err := s.Pending(ctx, time.Minute, 10)
	if err != nil || len(got) != 1 || got[0].Key.Value != "old" || !got[0].Ripe || got[0].ID != old.Intent.ID {
		t.Errorf("Pending(1m) = %+v, %v; want only the ripe intent old", got, err)
	}
	for _, tt := range []struct {
		in   Intent
		ripe bool
	}{{old.Intent, true}, {young.Intent, false}} {
		got, err := s.PendingForOrder(ctx, tt.in.OrderID, time.Minute)
		if err != nil || len(got) != 1 || got[0].Key != tt.in.Key || got[0].Ripe != tt.ripe {
			t.Errorf("PendingForOrder(%s) = %+v, %v; want %s ripe=%v", tt.in.Key, got, err, tt.in.Key, tt.ripe)
		}
	}
}

// TestStore_PurgeKeys: retention deletes answered keys past their age in
// batches, with their intents, and never a key whose outcome is unknown or
// a payment.
func TestStore_PurgeKeys(t *testing.T) {
	t.Parallel()
	s, pool := newStoreDB(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	for i := range 7 {
		k := "done-" + strconv.Itoa(i)
		c, _ := s.Claim(ctx, testKey(k), []byte("h"), testIntent(k), time.Hour)
		if err := s.Capture(ctx, testKey(k), &c.Token, c.Intent.payment("ch_"+k, now)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Claim(ctx, testKey("unknown"), []byte("h"), testIntent("unknown"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(ctx, testKey("recent"), []byte("h"), testIntent("recent"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE idempotency_keys SET created_at = created_at - interval '25 hours' WHERE key <> 'recent'`); err != nil {
		t.Fatal(err)
	}
	var batches []int64
	for {
		n, err := s.PurgeKeys(ctx, time.Now().Add(-KeyRetention), 3)
		if err != nil {
			t.Fatal(err)
		}
		batches = append(batches, n)
		if n < 3 {
			break
		}
	}
	if want := []int64{3, 3, 1}; len(batches) != len(want) || batches[0] != 3 || batches[1] != 3 || batches[2] != 1 {
		t.Errorf("PurgeKeys batches = %v; want %v", batches, want)
	}
	var keys, intents, payments int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM idempotency_keys), (SELECT count(*) FROM payment_intents),
		(SELECT count(*) FROM payments)`).Scan(&keys, &intents, &payments); err != nil {
		t.Fatal(err)
	}
	if keys != 2 || intents != 2 || payments != 7 {
		t.Errorf("after retention: %d keys, %d intents, %d payments; want 2 (unknown, recent), 2, 7", keys, intents, payments)
	}
	if got := intentState(t, pool, "unknown"); got != IntentPending {
		t.Errorf("the old intent whose outcome is unknown = %q; want still pending", got)
	}
}

// TestDecodeOutcome_Legacy: a key answered before outcomes were kept
// structured holds the problem it was answered with; it replays the same.
func TestDecodeOutcome_Legacy(t *testing.T) {
	t.Parallel()
	legacy := `{"code": "payment_declined", "detail": "the card was declined: insufficient_funds", "status": 402,
		"title": "Payment Required", "type": "https://orderflow.dev/problems/payment_declined", "decline_code": "insufficient_funds"}`
	got, err := decodeOutcome(keyDeclined, []byte(legacy))
	if err != nil || got != (Outcome{DeclineCode: "insufficient_funds"}) {
		t.Errorf("decodeOutcome(legacy 402) = %+v, %v; want the decline insufficient_funds", got, err)
	}
	if _, err := decodeOutcome(keyDeclined, []byte(`{}`)); err == nil {
		t.Error("decodeOutcome(402 without a decline code) = nil error; want one")
	}
}
