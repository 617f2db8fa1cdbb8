package notification_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go/middleware"
	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/pkg/events"
	"github.com/orderflow/orderflow/pkg/queue"
	"github.com/orderflow/orderflow/pkg/servicetest"
	"github.com/orderflow/orderflow/pkg/smtptest"
	"github.com/orderflow/orderflow/services/notification/internal/notification"
)

const testVisibility = 2 * time.Second

// workers are the invoice and e-mail workers' setting: a service on a fresh
// database mailing an SMTP listener, and a queue for each worker.
type workers struct {
	c           *sqs.Client
	smtp        *smtptest.Server
	svc         *notification.Service
	pool        *pgxpool.Pool
	invQ, mailQ queue.Queue
}

func newWorkers(t *testing.T) *workers {
	t.Helper()
	w := &workers{c: newSQS(t), smtp: smtptest.Start(t)}
	w.svc, w.pool = newService(t, w.smtp.Addr())
	w.invQ = newQueue(t, w.c, testVisibility, 5)
	w.mailQ = newQueue(t, w.c, testVisibility, 5)
	return w
}

// send puts e on both queues.
func (w *workers) send(t *testing.T, e events.Order) {
	t.Helper()
	sendEvent(t, w.c, w.invQ.URL, e)
	sendEvent(t, w.c, w.mailQ.URL, e)
}

// drain runs both workers until their queues are empty.
func (w *workers) drain(t *testing.T) {
	t.Helper()
	startConsumer(t, w.c, w.invQ, testVisibility, w.svc.HandleInvoice)
	startConsumer(t, w.c, w.mailQ, testVisibility, w.svc.HandleEmail)
	servicetest.WaitFor(t, 30*time.Second, "both queues drained", func() bool {
		return queueEmpty(t, w.c, w.invQ.URL) && queueEmpty(t, w.c, w.mailQ.URL)
	})
}

// wantOnce checks that e made one invoice and one e-mail.
func (w *workers) wantOnce(t *testing.T, e events.Order) {
	t.Helper()
	if n := count(t, w.pool, `SELECT count(*) FROM invoices WHERE event_id = $1`, e.ID); n != 1 {
		t.Errorf("invoices for the event = %d; want 1", n)
	}
	if n := len(w.smtp.Messages()); n != 1 {
		t.Errorf("SMTP messages received = %d; want 1", n)
	}
}

// TestWorkers_DuplicateDeliveries sends the same event three times to each
// queue and lets the workers handle the copies concurrently.
func TestWorkers_DuplicateDeliveries(t *testing.T) {
	t.Parallel()
	w := newWorkers(t)
	e := newEvent(events.OrderConfirmed, "buyer@example.com")
	for range 3 {
		w.send(t, e)
	}
	w.drain(t)
	w.wantOnce(t, e)
	if n := count(t, w.pool, `SELECT count(*) FROM processed_events WHERE event_id = $1`, e.ID); n != 2 {
		t.Errorf("processed_events rows = %d; want 2 (invoice, email)", n)
	}
	msgs := w.smtp.Messages()
	if len(msgs) == 0 {
		t.FailNow()
	}
	msg := msgs[0]
	if got, want := msg.Header().Get("Message-Id"), notification.MessageID(e.ID); got != want {
		t.Errorf("Message-ID = %q; want %q", got, want)
	}
	if diff := cmp.Diff([]string{"buyer@example.com"}, msg.To); diff != "" {
		t.Errorf("RCPT TO (-want +got):\n%s", diff)
	}
	if got := msg.Header().Get("Subject"); !strings.Contains(got, e.OrderID) {
		t.Errorf("Subject = %q; want it to name the order", got)
	}
}

// TestWorkers_Crash simulates a worker killed at two points: after the
// effect but before the delete, and after the receive but before the effect.
// Either way the message comes back after its visibility timeout and the
// effect happens once.
func TestWorkers_Crash(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		effect bool // run the handler before "dying"
	}{
		{"killed before delete", true},
		{"killed before the effect", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := newWorkers(t)
			e := newEvent(events.OrderConfirmed, "buyer@example.com")
			w.send(t, e)

			for _, worker := range []struct {
				url    string
				handle notification.HandlerFunc
			}{{w.invQ.URL, w.svc.HandleInvoice}, {w.mailQ.URL, w.svc.HandleEmail}} {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				out, err := w.c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
					QueueUrl: aws.String(worker.url), MaxNumberOfMessages: 1, WaitTimeSeconds: 5,
				})
				if err != nil || len(out.Messages) != 1 {
					cancel()
					t.Fatalf("ReceiveMessage = %d messages, %v; want 1", len(out.Messages), err)
				}
				if tt.effect {
					got, err := events.Decode([]byte(aws.ToString(out.Messages[0].Body)))
					if err != nil {
						t.Fatal(err)
					}
					if err := worker.handle(ctx, got); err != nil {
						t.Fatalf("handle = %v; want nil", err)
					}
				}
				cancel()
				// no delete: the worker "dies" here
			}

			// The redelivery after the visibility timeout.
			w.drain(t)
			w.wantOnce(t, e)
		})
	}
}

// TestConsumer_Poison checks that a message no retry can fix is not deleted
// but ends on the dead-letter queue quickly, and is counted once.
func TestConsumer_Poison(t *testing.T) {
	t.Parallel()
	bad := newEvent(events.OrderConfirmed, "buyer@example.com")
	bad.ID = "evt-not-a-uuid"
	badJSON := fmt.Sprintf(`{"id":%q,"type":"order.confirmed","order_id":%q,"occurred_at":%q}`,
		bad.ID, bad.OrderID, bad.OccurredAt.Format(time.RFC3339Nano))
	tests := []struct {
		name string
		body string
	}{
		{"not JSON", "this is not json"},
		{"unknown type", `{"id":"0190b6a4-0000-7000-8000-000000000001","type":"order.shipped","order_id":"0190b6a4-0000-7000-8000-000000000002","occurred_at":"2025-01-01T00:00:00Z"}`},
		{"id not a UUID", badJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newSQS(t)
			smtp := smtptest.Start(t)
			svc, pool := newService(t, smtp.Addr())
			q := newQueue(t, c, 30*time.Second, 3)
			sendBody(t, c, q.URL, tt.body)
			cons, stop := startConsumer(t, c, q, 30*time.Second, svc.HandleInvoice)

			var got string
			deadline := time.Now().Add(45 * time.Second)
			for got == "" {
				if time.Now().After(deadline) {
					t.Fatal("the poison message did not reach the dead-letter queue within 45s")
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
					QueueUrl: aws.String(q.DLQURL), MaxNumberOfMessages: 1, WaitTimeSeconds: 2,
				})
				cancel()
				if err != nil {
					t.Fatalf("ReceiveMessage on the DLQ: %v", err)
				}
				if len(out.Messages) == 1 {
					got = aws.ToString(out.Messages[0].Body)
				}
			}
			stop()
			if got != tt.body {
				t.Errorf("DLQ body = %q; want %q", got, tt.body)
			}
			if n := cons.Poisoned(); n != 1 {
				t.Errorf("Poisoned() = %d; want 1", n)
			}
			if n := count(t, pool, `SELECT count(*) FROM invoices`); n != 0 {
				t.Errorf("invoices = %d; want 0", n)
			}
		})
	}
}

// TestService_GapFreeInvoiceNumbers handles 30 confirmed events, each
// delivered twice, all at once: the invoices are numbered 1..30.
func TestService_GapFreeInvoiceNumbers(t *testing.T) {
	t.Parallel()
	svc, pool := newService(t, "127.0.0.1:1")
	const n = 30
	evs := make([]events.Order, n)
	for i := range evs {
		evs[i] = newEvent(events.OrderConfirmed, "")
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for _, e := range append(evs, evs...) {
		wg.Go(func() { errs <- svc.HandleInvoice(context.Background(), e) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("HandleInvoice = %v; want nil", err)
		}
	}
	rows, err := pool.Query(context.Background(), `SELECT number FROM invoices`)
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for rows.Next() {
		var num int64
		if err := rows.Scan(&num); err != nil {
			t.Fatal(err)
		}
		got = append(got, num)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
	want := make([]int64, n)
	for i := range want {
		want[i] = int64(i + 1)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("invoice numbers (-want +got):\n%s", diff)
	}
}

// TestWorkers_SMTPDown: while the SMTP server refuses DATA the message stays
// on the queue; when it recovers the e-mail goes out once.
func TestWorkers_SMTPDown(t *testing.T) {
	t.Parallel()
	c := newSQS(t)
	smtp := smtptest.Start(t)
	smtp.FailData(true)
	svc, pool := newService(t, smtp.Addr())
	q := newQueue(t, c, testVisibility, 100)
	e := newEvent(events.OrderCancelled, "buyer@example.com")
	sendEvent(t, c, q.URL, e)
	startConsumer(t, c, q, testVisibility, svc.HandleEmail)

	servicetest.WaitFor(t, 30*time.Second, "two refused sends", func() bool { return smtp.Rejected() >= 2 })
	if queueEmpty(t, c, q.URL) {
		t.Fatal("the queue is empty while SMTP refuses; want the message kept")
	}
	if n := count(t, pool, `SELECT count(*) FROM emails`); n != 0 {
		t.Errorf("email rows while SMTP refuses = %d; want 0 (rolled back)", n)
	}

	smtp.FailData(false)
	servicetest.WaitFor(t, 30*time.Second, "the e-mail sent and the queue drained", func() bool {
		return len(smtp.Messages()) == 1 && queueEmpty(t, c, q.URL)
	})
	if n := len(smtp.Messages()); n != 1 {
		t.Errorf("SMTP messages = %d; want 1", n)
	}
	if n := count(t, pool, `SELECT count(*) FROM emails WHERE event_id = $1 AND sent_at IS NOT NULL AND kind = 'order_cancelled'`, e.ID); n != 1 {
		t.Errorf("sent order_cancelled rows = %d; want 1", n)
	}
}

// TestService_HandleEmail covers the events that send nothing.
func TestService_HandleEmail(t *testing.T) {
	t.Parallel()
	smtp := smtptest.Start(t)
	svc, pool := newService(t, smtp.Addr())
	noAddr := newEvent(events.OrderPaymentFailed, "")
	if err := svc.HandleEmail(context.Background(), noAddr); err != nil {
		t.Errorf("HandleEmail(no address) = %v; want nil (nothing to send)", err)
	}
	badAddr := newEvent(events.OrderConfirmed, "not an address")
	if err := svc.HandleEmail(context.Background(), badAddr); !errors.Is(err, notification.ErrMalformed) {
		t.Errorf("HandleEmail(bad address) = %v; want ErrMalformed", err)
	}
	if n := len(smtp.Messages()); n != 0 {
		t.Errorf("SMTP messages = %d; want 0", n)
	}
	if n := count(t, pool, `SELECT count(*) FROM emails`); n != 0 {
		t.Errorf("email rows = %d; want 0", n)
	}
	// Other event types make no invoice.
	if err := svc.HandleInvoice(context.Background(), newEvent(events.OrderCancelled, "")); err != nil {
		t.Errorf("HandleInvoice(cancelled) = %v; want nil", err)
	}
	if n := count(t, pool, `SELECT count(*) FROM invoices`); n != 0 {
		t.Errorf("invoices = %d; want 0", n)
	}
}

// TestConsumer_BatchedDeletes checks the batched deletes: 25 messages, each
// handled once, all deleted (none comes back after its visibility timeout),
// including the last, partial batch, and the one still lingering when Run
// is stopped.
func TestConsumer_BatchedDeletes(t *testing.T) {
	t.Parallel()
	c := newSQS(t)
	q := newQueue(t, c, testVisibility, 5)
	const n = 25
	for range n {
		sendEvent(t, c, q.URL, newEvent(events.OrderConfirmed, "buyer@example.com"))
	}
	var mu sync.Mutex
	handled := map[string]int{}
	_, stop := startConsumer(t, c, q, testVisibility, func(_ context.Context, e events.Order) error {
		mu.Lock()
		defer mu.Unlock()
		handled[e.ID]++
		return nil
	})
	servicetest.WaitFor(t, 20*time.Second, "all 25 handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled) == n
	})
	stop() // flushes whatever batch is still waiting
	servicetest.WaitFor(t, 10*time.Second, "queue empty", func() bool { return queueEmpty(t, c, q.URL) })
	// Past the visibility timeout: an undeleted message would be back.
	time.Sleep(testVisibility + 500*time.Millisecond)
	if !queueEmpty(t, c, q.URL) {
		t.Fatalf("queue not empty %v after the handlers finished: a delete was lost", testVisibility)
	}
	for id, times := range handled {
		if times != 1 {
			t.Errorf("event %s handled %d times; want 1", id, times)
		}
	}
}

// TestConsumer_BusyWorkerReceivesInBatches checks that a worker behind its
// queue gathers the handler slots that free up within the receive linger
// instead of receiving one message each time a handler finishes: 40
// messages through 4 slow handlers take about one receive per 4 messages.
func TestConsumer_BusyWorkerReceivesInBatches(t *testing.T) {
	t.Parallel()
	base := newSQS(t)
	q := newQueue(t, base, testVisibility, 5)
	var receives atomic.Int64
	c := sqs.New(base.Options(), func(o *sqs.Options) {
		o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
			return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("countReceives",
				func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
					if _, ok := in.Parameters.(*sqs.ReceiveMessageInput); ok {
						receives.Add(1)
					}
					return next.HandleInitialize(ctx, in)
				}), middleware.Before)
		})
	})
	const n = 40
	for range n {
		sendEvent(t, base, q.URL, newEvent(events.OrderConfirmed, "buyer@example.com"))
	}
	var handled atomic.Int64
	startConsumer(t, c, q, testVisibility, func(context.Context, events.Order) error {
		time.Sleep(30 * time.Millisecond) // an SMTP exchange
		handled.Add(1)
		return nil
	})
	servicetest.WaitFor(t, 30*time.Second, "all 40 handled", func() bool { return handled.Load() >= n })
	// 4 handlers take 4 messages a receive: 10 receives, and one more that
	// waits on the empty queue. Receiving per freed handler took 22.
	if got, most := receives.Load(), int64(15); got > most {
		t.Errorf("%d messages took %d receives; want at most %d: a busy worker receives one message per freed handler", n, got, most)
	}
}
