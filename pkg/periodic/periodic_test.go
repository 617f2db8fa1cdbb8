package periodic_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orderflow/orderflow/pkg/periodic"
)

func TestRun(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		periodic.Run(ctx, time.Millisecond, func(context.Context) {
			if calls.Add(1) == 3 {
				cancel()
			}
		})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after ctx ended")
	}
	// A tick that is due together with the end of ctx may still be
	// taken (select picks at random), so a fourth call is no failure.
	if n := calls.Load(); n < 3 {
		t.Errorf("fn called %d times; want 3 or more before Run returned", n)
	}
}

func TestRunOrWake(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wake := make(chan struct{})
	called := make(chan struct{}, 1)
	go periodic.RunOrWake(ctx, time.Hour, wake, func(context.Context) { called <- struct{}{} })
	select {
	case <-called:
		t.Fatal("fn called before an interval passed or wake received")
	case <-time.After(20 * time.Millisecond):
	}
	wake <- struct{}{}
	select {
	case <-called:
	case <-time.After(10 * time.Second):
		t.Fatal("fn not called after wake received, long before the hour-long interval")
	}
}

func TestRun_StopsBeforeFirstInterval(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	periodic.Run(ctx, time.Hour, func(context.Context) { t.Error("fn called on a context already done") })
}
