// Package queuetest connects tests to the real local SQS endpoint (fauxqs)
// and gives each test its own queues.
package queuetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/orderflow/orderflow/pkg/queue"
)

// Config is the SQS endpoint tests use: $TEST_SQS_ENDPOINT, else fauxqs on
// 127.0.0.1:4566. The test fails, saying how to start it, when it does not
// answer.
func Config(t testing.TB) queue.Config {
	t.Helper()
	endpoint := os.Getenv("TEST_SQS_ENDPOINT")
	if endpoint == "" {
		endpoint = "http://127.0.0.1:4566"
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatalf("TEST_SQS_ENDPOINT: %v", err)
	}
	c, err := net.DialTimeout("tcp", u.Host, 2*time.Second)
	if err != nil {
		t.Fatalf("the SQS endpoint %s is needed for this test and does not answer: %v; %s", endpoint, err, queue.StartHint)
	}
	c.Close()
	return queue.Config{Region: "us-east-1", Endpoint: endpoint, AccessKeyID: "test", SecretAccessKey: "test"}
}

// Client returns a client for Config(t).
func Client(t testing.TB) *sqs.Client {
	t.Helper()
	c, err := queue.NewClient(context.Background(), Config(t))
	if err != nil {
		t.Fatalf("sqs client: %v", err)
	}
	return c
}

// Name returns base with a random suffix, so tests never share a queue.
func Name(base string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return base + "-" + hex.EncodeToString(b[:])
}

// Drain receives and deletes messages from url until want have arrived or
// timeout passes, and returns their bodies, each message once.
//
// Its receives hide messages for 3 s only: when the endpoint is slow (a
// loaded machine) and the SDK retries a receive whose first answer it never
// read, the messages that answer held come back within the drain instead of
// after the queue's visibility timeout. A message seen twice that way is
// deleted again but returned once.
func Drain(t testing.TB, c *sqs.Client, url string, want int, timeout time.Duration) []string {
	t.Helper()
	var bodies []string
	seen := map[string]bool{}
	deadline := time.Now().Add(timeout)
	for len(bodies) < want && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
			VisibilityTimeout: 3, MessageAttributeNames: []string{"All"},
		})
		cancel()
		if err != nil {
			t.Fatalf("receive from %s: %v", url, err)
		}
		var entries []types.DeleteMessageBatchRequestEntry
		for i, m := range out.Messages {
			if id := aws.ToString(m.MessageId); !seen[id] {
				seen[id] = true
				bodies = append(bodies, aws.ToString(m.Body))
			}
			entries = append(entries, types.DeleteMessageBatchRequestEntry{
				Id: aws.String(string(rune('a' + i))), ReceiptHandle: m.ReceiptHandle,
			})
		}
		if len(entries) > 0 {
			if _, err := c.DeleteMessageBatch(context.Background(), &sqs.DeleteMessageBatchInput{
				QueueUrl: aws.String(url), Entries: entries,
			}); err != nil {
				t.Fatalf("delete from %s: %v", url, err)
			}
		}
	}
	return bodies
}
