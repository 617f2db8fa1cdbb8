package payment

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/pkg/dbtest"
)

func TestStore_ClaimTakeOverAndFencing(t *testing.T) {
	t.Parallel()
	fsys, err := migrations.For("payment")
	if err != nil {
		t.Fatal(err)
	}
	s := NewStore(dbtest.NewPool(t, fsys))
	ctx := context.Background()
	hash := []byte("h1")

	first, err := s.Claim(ctx, "k", hash, time.Hour)
	if err != nil || !first.Owned {
		t.Fatalf("Claim(new key) = %+v, %v; want owned", first, err)
	}
	busy, err := s.Claim(ctx, "k", hash, time.Hour)
	if err != nil || busy.Owned || busy.Status != nil || string(busy.Hash) != "h1" {
		t.Fatalf("Claim(in-progress key) = %+v, %v; want in progress", busy, err)
	}
	if other, _ := s.Claim(ctx, "k", []byte("h2"), time.Nanosecond); other.Owned {
		t.Fatal("a stale claim was taken over by another request body")
	}

	time.Sleep(5 * time.Millisecond)
	second, err := s.Claim(ctx, "k", hash, time.Millisecond)
	if err != nil || !second.Owned || !second.Token.After(first.Token) {
		t.Fatalf("Claim(stale key) = %+v, %v; want taken over", second, err)
	}

	// The first owner was fenced off: it can neither complete nor release.
	if err := s.Complete(ctx, "k", first.Token, nil, 402, []byte(`{"a":1}`)); !errors.Is(err, errClaimLost) {
		t.Errorf("Complete(old token) = %v; want errClaimLost", err)
	}
	if err := s.Release(ctx, "k", first.Token); err != nil {
		t.Fatal(err)
	}
	if err := s.Complete(ctx, "k", second.Token, nil, 402, []byte(`{"a":1}`)); err != nil {
		t.Fatalf("Complete(new token) = %v", err)
	}
	done, err := s.Claim(ctx, "k", hash, time.Millisecond)
	if err != nil || done.Owned || done.Status == nil || *done.Status != 402 || string(done.Body) != `{"a": 1}` {
		t.Errorf("Claim(completed key) = %+v, %v; want the stored 402", done, err)
	}

	// Releasing an unfinished claim frees the key for a retry.
	third, _ := s.Claim(ctx, "k2", hash, time.Hour)
	if err := s.Release(ctx, "k2", third.Token); err != nil {
		t.Fatal(err)
	}
	if again, _ := s.Claim(ctx, "k2", hash, time.Hour); !again.Owned {
		t.Error("released key could not be claimed again")
	}
}
