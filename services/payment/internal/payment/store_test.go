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

func testIntent(key string) Intent {
	return Intent{ID: uuid.Must(uuid.NewV7()).String(), OrderID: uuid.Must(uuid.NewV7()).String(),
		AmountCents: 100, Currency: "USD", Method: "pm_card_ok", ProviderKey: key}
}

func TestStore_ClaimTakeOverAndFencing(t *testing.T) {
	t.Parallel()
	s, pool := newStoreDB(t)
	ctx := context.Background()
	hash := []byte("h1")

	first, err := s.Claim(ctx, "k", hash, testIntent("k"), time.Hour)
	if err != nil || !first.Owned || !first.Fresh {
		t.Fatalf("Claim(new key) = %+v, %v; want owned and fresh", first, err)
	}
	if got := intentState(t, pool, "k"); got != IntentPending {
		t.Fatalf("intent of a new claim = %q; want pending", got)
	}
	busy, err := s.Claim(ctx, "k", hash, testIntent("k"), time.Hour)
	if err != nil || busy.Owned || busy.Status != nil || string(busy.Hash) != "h1" {
		t.Fatalf("Claim(in-progress key) = %+v, %v; want in progress", busy, err)
	}
	if other, _ := s.Claim(ctx, "k", []byte("h2"), testIntent("k"), time.Nanosecond); other.Owned {
		t.Fatal("a stale claim was taken over by another request body")
	}

	time.Sleep(5 * time.Millisecond)
	second, err := s.Claim(ctx, "k", hash, testIntent("k"), time.Millisecond)
	if err != nil || !second.Owned || second.Fresh || !second.Token.After(first.Token) {
		t.Fatalf("Claim(stale key) = %+v, %v; want taken over, not fresh", second, err)
	}
	// The taken-over claim works on the first claim's intent.
	if second.Intent.ID != first.Intent.ID || second.Intent.ProviderKey != "k" {
		t.Errorf("taken-over intent = %+v; want the first one's %+v", second.Intent, first.Intent)
	}

	// The first owner was fenced off: it can neither answer nor release.
	if err := s.Decline(ctx, "k", first.Token, []byte(`{"a":1}`)); !errors.Is(err, errClaimLost) {
		t.Errorf("Decline(old token) = %v; want errClaimLost", err)
	}
	if gone, err := s.Release(ctx, "k", first.Token); err != nil || gone {
		t.Fatalf("Release(old token) = %v, %v; want false, nil", gone, err)
	}
	if err := s.Decline(ctx, "k", second.Token, []byte(`{"a":1}`)); err != nil {
		t.Fatalf("Decline(new token) = %v", err)
	}
	if got := intentState(t, pool, "k"); got != IntentDeclined {
		t.Errorf("intent after Decline = %q; want declined", got)
	}
	done, err := s.Claim(ctx, "k", hash, testIntent("k"), time.Millisecond)
	if err != nil || done.Owned || done.Status == nil || *done.Status != 402 || string(done.Body) != `{"a": 1}` {
		t.Errorf("Claim(answered key) = %+v, %v; want the stored 402", done, err)
	}

	// Releasing an unfinished claim frees the key, and its intent, for a
	// retry.
	third, _ := s.Claim(ctx, "k2", hash, testIntent("k2"), time.Hour)
	if gone, err := s.Release(ctx, "k2", third.Token); err != nil || !gone {
		t.Fatalf("Release = %v, %v; want true, nil", gone, err)
	}
	if got := intentState(t, pool, "k2"); got != "" {
		t.Errorf("intent after Release = %q; want none", got)
	}
	if again, _ := s.Claim(ctx, "k2", hash, testIntent("k2"), time.Hour); !again.Owned || !again.Fresh {
		t.Error("released key could not be claimed again")
	}
}

func TestStore_ParkedClaimIsTakenOverAtOnce(t *testing.T) {
	t.Parallel()
	s, _ := newStoreDB(t)
	ctx := context.Background()
	first, err := s.Claim(ctx, "p", []byte("h"), testIntent("p"), time.Hour)
	if err != nil || !first.Owned {
		t.Fatalf("Claim = %+v, %v", first, err)
	}
	if err := s.Park(ctx, "p", first.Token); err != nil {
		t.Fatal(err)
	}
	second, err := s.Claim(ctx, "p", []byte("h"), testIntent("p"), time.Hour)
	if err != nil || !second.Owned || second.Intent.ID != first.Intent.ID {
		t.Fatalf("Claim(parked key) = %+v, %v; want taken over with the same intent", second, err)
	}
	// A takeover unparks: a third request waits for the second.
	if third, _ := s.Claim(ctx, "p", []byte("h"), testIntent("p"), time.Hour); third.Owned {
		t.Error("a claim taken over from a parked one was taken over again at once")
	}
}

func TestStore_CaptureWithoutTokenSettlesWhoeverHoldsTheClaim(t *testing.T) {
	t.Parallel()
	s, pool := newStoreDB(t)
	ctx := context.Background()
	c, _ := s.Claim(ctx, "c", []byte("h"), testIntent("c"), time.Hour)
	now := time.Now().UTC().Truncate(time.Microsecond)
	p := c.Intent.payment("ch_1", now)
	if err := s.Capture(ctx, "c", nil, p, []byte(`{}`)); err != nil {
		t.Fatalf("Capture(nil token) = %v", err)
	}
	// The request that held the claim finds it answered.
	if err := s.Capture(ctx, "c", &c.Token, p, []byte(`{}`)); !errors.Is(err, errClaimLost) {
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
	old, _ := s.Claim(ctx, "old", []byte("h"), testIntent("old"), time.Hour)
	young, _ := s.Claim(ctx, "young", []byte("h"), testIntent("young"), time.Hour)
	answered, _ := s.Claim(ctx, "answered", []byte("h"), testIntent("answered"), time.Hour)
	if err := s.Decline(ctx, "answered", answered.Token, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE idempotency_keys SET created_at = created_at - interval '1 hour' WHERE key IN ('old', 'answered')`); err != nil {
		t.Fatal(err)
	}
	got, err := s.Pending(ctx, time.Minute, 10)
	if err != nil || len(got) != 1 || got[0].Key != "old" || !got[0].Ripe || got[0].ID != old.Intent.ID {
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

// TestStore_DeleteAnswered: retention deletes answered keys past their age
// in batches, with their intents, and never a key whose outcome is unknown
// or a payment.
func TestStore_DeleteAnswered(t *testing.T) {
	t.Parallel()
	s, pool := newStoreDB(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	for i := range 7 {
		k := "done-" + strconv.Itoa(i)
		c, _ := s.Claim(ctx, k, []byte("h"), testIntent(k), time.Hour)
		if err := s.Capture(ctx, k, &c.Token, c.Intent.payment("ch_"+k, now), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Claim(ctx, "unknown", []byte("h"), testIntent("unknown"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(ctx, "recent", []byte("h"), testIntent("recent"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE idempotency_keys SET created_at = created_at - interval '25 hours' WHERE key <> 'recent'`); err != nil {
		t.Fatal(err)
	}
	var batches []int64
	for {
		n, err := s.DeleteAnswered(ctx, 24*time.Hour, 3)
		if err != nil {
			t.Fatal(err)
		}
		batches = append(batches, n)
		if n < 3 {
			break
		}
	}
	if want := []int64{3, 3, 1}; len(batches) != len(want) || batches[0] != 3 || batches[1] != 3 || batches[2] != 1 {
		t.Errorf("DeleteAnswered batches = %v; want %v", batches, want)
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
