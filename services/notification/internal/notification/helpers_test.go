package notification_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/pkg/dbtest"
	"github.com/orderflow/orderflow/pkg/events"
	"github.com/orderflow/orderflow/pkg/queue"
	"github.com/orderflow/orderflow/services/notification/internal/notification"
)

func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// sqsEndpoint is the SQS emulator tests use: $TEST_SQS_ENDPOINT or fauxqs
// on its default port.
func sqsEndpoint() string {
	if e := os.Getenv("TEST_SQS_ENDPOINT"); e != "" {
		return e
	}
	return "http://127.0.0.1:4566"
}

// newSQS returns a client on the test endpoint and fails the test, saying
// how to start the endpoint, when it does not answer.
func newSQS(t *testing.T) *sqs.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := queue.NewClient(ctx, queue.Config{
		Region: "us-east-1", Endpoint: sqsEndpoint(), AccessKeyID: "test", SecretAccessKey: "test",
	})
	if err != nil {
		t.Fatalf("SQS client: %v", err)
	}
	if _, err := c.ListQueues(ctx, &sqs.ListQueuesInput{MaxResults: aws.Int32(1)}); err != nil {
		t.Fatalf("the SQS endpoint %s is needed for this test and does not answer: %v; start it with `make deps`", sqsEndpoint(), err)
	}
	return c
}

// uniqueName returns a queue name no other test run uses.
func uniqueName(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// newQueue creates a uniquely named queue and its DLQ, deleted after the test.
func newQueue(t *testing.T, c *sqs.Client, visibility time.Duration, maxReceives int) queue.Queue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, err := queue.Ensure(ctx, c, uniqueName("notif-test"), queue.Options{VisibilityTimeout: visibility, MaxReceiveCount: maxReceives})
	if err != nil {
		t.Fatalf("queue.Ensure: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = c.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(q.URL)})
		_, _ = c.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(q.DLQURL)})
	})
	return q
}

// newService returns a service on a fresh database that mails through
// smtpAddr, and the pool for direct checks.
func newService(t *testing.T, smtpAddr string) (*notification.Service, *pgxpool.Pool) {
	t.Helper()
	fsys, err := migrations.For("notification")
	if err != nil {
		t.Fatal(err)
	}
	pool := dbtest.NewPool(t, fsys)
	svc := notification.NewService(notification.NewStore(pool),
		notification.NewMailer(smtpAddr, "orders@orderflow.test"), testLogger(t))
	return svc, pool
}

func newEvent(typ, email string) events.Order {
	return events.Order{
		ID:         uuid.Must(uuid.NewV7()).String(),
		Type:       typ,
		OrderID:    uuid.Must(uuid.NewV7()).String(),
		CustomerID: "cus_1",
		Email:      email,
		Status:     "confirmed",
		Items: []events.Item{
			{SKU: "SKU-00001", Quantity: 2, UnitPriceCents: 1250},
			{SKU: "SKU-00002", Quantity: 1, UnitPriceCents: 999},
		},
		TotalCents: 3499,
		Currency:   "USD",
		OccurredAt: time.Now().UTC().Truncate(time.Millisecond),
	}
}

func sendBody(t *testing.T, c *sqs.Client, url, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(body)}); err != nil {
		t.Fatalf("SendMessage: %v", err)
	}
}

func sendEvent(t *testing.T, c *sqs.Client, url string, e events.Order) {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	sendBody(t, c, url, string(b))
}

// startConsumer runs a consumer until the test ends (or stop is called) and
// checks that Run returns nil.
func startConsumer(t *testing.T, c *sqs.Client, q queue.Queue, visibility time.Duration, h notification.HandlerFunc) (*notification.Consumer, func()) {
	t.Helper()
	cons := notification.NewConsumer(c, notification.ConsumerConfig{
		Name: "test", QueueURL: q.URL, Concurrency: 4, VisibilityTimeout: visibility,
	}, h, testLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cons.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run = %v; want nil", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return 30s after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return cons, stop
}

// queueEmpty reports whether the queue has no visible or in-flight message.
func queueEmpty(t *testing.T, c *sqs.Client, url string) bool {
	t.Helper()
	visible, inFlight, err := queue.Depth(context.Background(), c, url)
	if err != nil {
		t.Fatalf("queue.Depth: %v", err)
	}
	return visible == 0 && inFlight == 0
}

func count(t *testing.T, pool *pgxpool.Pool, query string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}
