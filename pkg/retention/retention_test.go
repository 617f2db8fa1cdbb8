package retention

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestPurge_BatchesUntilShort(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	left := 2*BatchSize + 7
	var calls int
	var sawBefore time.Time
	keys := Job{Name: "keys", Keep: 24 * time.Hour, Delete: func(_ context.Context, before time.Time, limit int) (int64, error) {
		calls++
		sawBefore = before
		n := min(left, limit)
		left -= n
		return int64(n), nil
	}}
	failing := Job{Name: "broken", Keep: time.Hour, Delete: func(context.Context, time.Time, int) (int64, error) {
		return 0, errors.New("boom")
	}}
	deleted, err := Purge(context.Background(), now, failing, keys)
	if err == nil {
		t.Error("Purge with a failing job = nil error; want it reported")
	}
	if deleted["keys"] != 2*BatchSize+7 || calls != 3 {
		t.Errorf("deleted %d in %d batches; want %d in 3 (a failing job must not stop the others)", deleted["keys"], calls, 2*BatchSize+7)
	}
	if want := now.Add(-24 * time.Hour); !sawBefore.Equal(want) {
		t.Errorf("before = %v; want now − Keep = %v", sawBefore, want)
	}
}
