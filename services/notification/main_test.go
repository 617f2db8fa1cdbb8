package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/uuid"

	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/pkg/authtest"
	"github.com/orderflow/orderflow/pkg/dbtest"
	"github.com/orderflow/orderflow/pkg/events"
	"github.com/orderflow/orderflow/pkg/queue"
	"github.com/orderflow/orderflow/pkg/servicetest"
	"github.com/orderflow/orderflow/pkg/smtptest"
)

func sqsEndpoint() string {
	if e := os.Getenv("TEST_SQS_ENDPOINT"); e != "" {
		return e
	}
	return "http://127.0.0.1:4566"
}

func suffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// getJSON fetches url into v and returns the status, or 0 when the server
// does not answer yet.
// getJSON GETs url, with a bearer token when it is not "", and decodes the
// body into v (nil: discarded).
func getJSON(url, token string, v any) int {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if v != nil {
		_ = json.Unmarshal(body, v)
	}
	return resp.StatusCode
}

// TestRun starts the whole service on real Postgres, fauxqs and an SMTP
// listener, feeds both queues one confirmed order and reads the results
// through the API.
func TestRun(t *testing.T) {
	fsys, err := migrations.For("notification")
	if err != nil {
		t.Fatal(err)
	}
	dbURL := dbtest.NewURL(t, fsys)
	smtp := smtptest.Start(t)
	invoiceQueue, emailQueue := "e2e-invoices-"+suffix(), "e2e-emails-"+suffix()
	// The reads need the event's customer's token, from a real Hydra.
	hydra := authtest.Start(t, authtest.Options{})
	customer, err := hydra.CustomerToken(context.Background(), "cus_1")
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"AUTH_ISSUER":                     hydra.Issuer,
		"NOTIFICATION_ADDR":               "127.0.0.1:0",
		"NOTIFICATION_DATABASE_URL":       dbURL,
		"NOTIFICATION_DB_MAX_CONNS":       "5",
		"NOTIFICATION_SMTP_ADDR":          smtp.Addr(),
		"NOTIFICATION_INVOICE_QUEUE":      invoiceQueue,
		"NOTIFICATION_EMAIL_QUEUE":        emailQueue,
		"NOTIFICATION_VISIBILITY_TIMEOUT": "5s",
		"NOTIFICATION_CONCURRENCY":        "2",
		"AWS_REGION":                      "us-east-1",
		"AWS_ENDPOINT_URL_SQS":            sqsEndpoint(),
		"AWS_ACCESS_KEY_ID":               "test",
		"AWS_SECRET_ACCESS_KEY":           "test",
		"LOG_LEVEL":                       "info",
	}
	getenv := func(k string) string { return vars[k] }

	client, err := queue.NewClient(context.Background(), queue.ReadConfig(getenv))
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err = client.ListQueues(pctx, &sqs.ListQueuesInput{})
	pcancel()
	if err != nil {
		t.Fatalf("the SQS endpoint %s is needed for this test and does not answer: %v; start it with `make deps`", sqsEndpoint(), err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, name := range []string{invoiceQueue, invoiceQueue + "-dlq", emailQueue, emailQueue + "-dlq"} {
			if u, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)}); err == nil {
				_, _ = client.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: u.QueueUrl})
			}
		}
	})

	srv := servicetest.Start(t, func(ctx context.Context, stdout io.Writer) error {
		return run(ctx, []string{"notification"}, getenv, stdout, io.Discard)
	})
	base := srv.URL
	srv.WaitFor(t, 30*time.Second, "/readyz (queues created)", func() bool { return getJSON(base+"/readyz", "", nil) == http.StatusOK })

	e := events.Order{
		ID:         uuid.Must(uuid.NewV7()).String(),
		Type:       events.OrderConfirmed,
		OrderID:    uuid.Must(uuid.NewV7()).String(),
		CustomerID: "cus_1",
		Email:      "buyer@example.com",
		Status:     "confirmed",
		Items:      []events.Item{{SKU: "SKU-00001", Quantity: 2, UnitPriceCents: 1250}},
		TotalCents: 2500,
		Currency:   "USD",
		OccurredAt: time.Now().UTC(),
	}
	body, _ := json.Marshal(e)
	for _, name := range []string{invoiceQueue, emailQueue} {
		u, err := client.GetQueueUrl(context.Background(), &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.SendMessage(context.Background(), &sqs.SendMessageInput{
			QueueUrl: u.QueueUrl, MessageBody: aws.String(string(body)),
		}); err != nil {
			t.Fatal(err)
		}
	}

	var invoices struct {
		Invoices []struct {
			Number  int64  `json:"number"`
			OrderID string `json:"order_id"`
		} `json:"invoices"`
	}
	srv.WaitFor(t, 30*time.Second, "the invoice", func() bool {
		return getJSON(base+"/v1/invoices?order_id="+e.OrderID, customer, &invoices) == http.StatusOK && len(invoices.Invoices) == 1
	})
	if got := invoices.Invoices[0]; got.Number != 1 || got.OrderID != e.OrderID {
		t.Errorf("invoice = %+v; want number 1 for order %s", got, e.OrderID)
	}
	var emails struct {
		Emails []struct {
			To   string `json:"to"`
			Kind string `json:"kind"`
		} `json:"emails"`
	}
	srv.WaitFor(t, 30*time.Second, "the e-mail", func() bool {
		return getJSON(base+"/v1/emails?order_id="+e.OrderID, customer, &emails) == http.StatusOK && len(emails.Emails) == 1
	})
	if got := emails.Emails[0]; got.To != e.Email || got.Kind != "order_confirmed" {
		t.Errorf("email = %+v; want order_confirmed to %s", got, e.Email)
	}
	if n := len(smtp.Messages()); n != 1 {
		t.Errorf("SMTP messages = %d; want 1", n)
	}
	// The queues' depth is polled in the background: it shows within a
	// poll interval of the queues' creation.
	srv.WaitFor(t, 30*time.Second, "orderflow_queue_messages on /metrics", func() bool {
		return strings.Contains(srv.Scrape(t), "\norderflow_queue_messages{")
	})
	if metrics := srv.Scrape(t); !strings.Contains(metrics, "\norderflow_messages_processed_total{") ||
		!strings.Contains(metrics, "\norderflow_http_requests_total{") {
		t.Errorf("GET /metrics lacks orderflow_messages_processed_total or orderflow_http_requests_total:\n%s", metrics)
	}

	if err := srv.Stop(t); err != nil {
		t.Fatalf("run = %v; want nil", err)
	}
}

func TestReadConfig(t *testing.T) {
	tests := []struct {
		name    string
		vars    map[string]string
		wantErr bool
	}{
		{"defaults", nil, false},
		{"bad concurrency", map[string]string{"NOTIFICATION_CONCURRENCY": "0"}, true},
		{"bad visibility", map[string]string{"NOTIFICATION_VISIBILITY_TIMEOUT": "1s"}, true},
		{"not a number", map[string]string{"NOTIFICATION_MAX_RECEIVES": "many"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := readConfig([]string{"notification"}, func(k string) string { return tt.vars[k] }, io.Discard)
			if (err != nil) != tt.wantErr {
				t.Fatalf("readConfig = %v; want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && (cfg.Addr != ":8083" || cfg.invoiceQueue != "order-invoices" || cfg.emailQueue != "order-emails" || cfg.concurrency != 4) {
				t.Errorf("defaults = %+v", cfg)
			}
		})
	}
}

// TestRun_SQSDown: with SQS unreachable the service still starts, is alive
// but not ready, and shuts down cleanly.
func TestRun_SQSDown(t *testing.T) {
	fsys, err := migrations.For("notification")
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"NOTIFICATION_ADDR":         "127.0.0.1:0",
		"NOTIFICATION_DATABASE_URL": dbtest.NewURL(t, fsys),
		"AWS_ENDPOINT_URL_SQS":      "http://" + servicetest.RefusingAddr(t), // SQS is down
		"AWS_ACCESS_KEY_ID":         "test",
		"AWS_SECRET_ACCESS_KEY":     "test",
		"LOG_LEVEL":                 "info",
	}
	srv := servicetest.Start(t, func(ctx context.Context, stdout io.Writer) error {
		return run(ctx, []string{"notification"}, func(k string) string { return vars[k] }, stdout, io.Discard)
	})
	base := srv.URL
	srv.WaitFor(t, 30*time.Second, "/healthz", func() bool { return getJSON(base+"/healthz", "", nil) == http.StatusOK })
	var problem struct {
		Checks map[string]string `json:"checks"`
	}
	if got := getJSON(base+"/readyz", "", &problem); got != http.StatusServiceUnavailable || problem.Checks["sqs"] == "" {
		t.Errorf("/readyz = %d %v; want 503 with a failing sqs check", got, problem.Checks)
	}
	if err := srv.Stop(t); err != nil {
		t.Fatalf("run = %v; want nil", err)
	}
}
