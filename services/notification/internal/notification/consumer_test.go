package notification_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orderflow/orderflow/pkg/events"
	"github.com/orderflow/orderflow/pkg/queue"
	"github.com/orderflow/orderflow/services/notification/internal/notification"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		attempt  int
		min, max time.Duration
	}{
		{0, 100 * time.Millisecond, 200 * time.Millisecond},
		{1, 100 * time.Millisecond, 200 * time.Millisecond},
		{2, 200 * time.Millisecond, 400 * time.Millisecond},
		{5, 1600 * time.Millisecond, 3200 * time.Millisecond},
		{10, 7500 * time.Millisecond, 15 * time.Second},
		{1000, 7500 * time.Millisecond, 15 * time.Second},
	}
	for _, tt := range tests {
		for range 50 {
			if d := notification.Backoff(tt.attempt); d < tt.min || d > tt.max {
				t.Fatalf("Backoff(%d) = %v; want within [%v, %v]", tt.attempt, d, tt.min, tt.max)
			}
		}
	}
}

// TestConsumer_ReceiveErrors runs a consumer against an SQS endpoint that
// answers every call with 500: Run keeps going (backing off, not spinning)
// and returns nil once cancelled.
func TestConsumer_ReceiveErrors(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, `{"__type":"InternalFailure","message":"down"}`, http.StatusInternalServerError)
	}))
	defer down.Close()
	c, err := queue.NewClient(context.Background(), queue.Config{
		Region: "us-east-1", Endpoint: down.URL, AccessKeyID: "test", SecretAccessKey: "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	cons := notification.NewConsumer(c, notification.ConsumerConfig{
		Name: "down", QueueURL: down.URL + "/000000000000/q", Concurrency: 2, VisibilityTimeout: 2 * time.Second,
	}, func(context.Context, events.Order) error { return nil }, testLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cons.Run(ctx) }()

	time.Sleep(2 * time.Second)
	select {
	case err := <-done:
		t.Fatalf("Run returned %v while SQS was down; want it to keep retrying", err)
	default:
	}
	// A spinning loop would make thousands of calls in 2s; backing off
	// (plus the SDK's own retries) keeps it to a handful.
	if n := calls.Load(); n == 0 || n > 40 {
		t.Errorf("calls to the broken endpoint in 2s = %d; want between 1 and 40", n)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v; want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
