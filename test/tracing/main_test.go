// Package tracing checks Orderflow's observability across real processes:
// one order is one trace through every hop, queue included, and every
// metric the dashboard needs is on /metrics with sane values. Every call
// carries a real access token of one Ory Hydra shared by the tests.
package tracing

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orderflow/orderflow/pkg/authtest"
	"github.com/orderflow/orderflow/pkg/dbtest"
	"github.com/orderflow/orderflow/pkg/queue/queuetest"
	"github.com/orderflow/orderflow/pkg/smtptest"
	"github.com/orderflow/orderflow/pkg/telemetry/otlptest"
	"github.com/orderflow/orderflow/test/stack"
)

var (
	binDir string
	hydra  *authtest.Hydra // the issuer of every stack's tokens
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "orderflow-tracing-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir = dir
	if err := stack.Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	hydra, err = authtest.StartProcess(ctx, authtest.Options{})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer hydra.Close()
	return m.Run()
}

// customer is the customer whose token places the tests' orders.
const customer = "cus_trace"

// customerToken is customer's access token (authorization code + PKCE).
func customerToken(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := hydra.CustomerToken(ctx, customer)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// adminToken is an orderflow-admin token (client credentials).
func adminToken(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := hydra.AdminToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// startStack starts all five processes exporting their spans to recv, with
// extra per-service environment, and stops them when the test ends (before
// the receiver is read for the last time, so every span is flushed).
func startStack(t *testing.T, recv *otlptest.Receiver, serviceEnv map[string][]string) *stack.Stack {
	t.Helper()
	sqs := queuetest.Config(t)
	smtp := smtptest.Start(t)
	dbs := map[string]string{}
	for _, name := range []string{"order", "inventory", "payment", "notification"} {
		dbs[name] = dbtest.NewURL(t, nil)
	}
	logDir := t.TempDir()
	s, err := stack.Start(stack.Config{
		BinDir: binDir, LogDir: logDir, Databases: dbs, SQSEndpoint: sqs.Endpoint, SMTPAddr: smtp.Addr(), Hydra: hydra,
		Env:        []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + recv.Endpoint(), "OTEL_TRACES_SAMPLER_ARG=1"},
		ServiceEnv: serviceEnv,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			for _, name := range stack.Services {
				b, _ := os.ReadFile(s.LogPath(name))
				if len(b) > 4000 {
					b = b[len(b)-4000:]
				}
				t.Logf("--- end of %s log ---\n%s", name, b)
			}
		}
	})
	return s
}

// call sends a JSON request and returns the status and decoded body.
func call(t *testing.T, method, url string, body any, headers ...string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

var keys atomic.Int64

// placeOrder places an order as the customer whose token it is; the
// customer comes from the token, so the body names none.
func placeOrder(t *testing.T, s *stack.Stack, token, sku string, qty int, method string) (int, map[string]any) {
	t.Helper()
	return call(t, http.MethodPost, s.URL("order", "/v1/orders"), map[string]any{
		"email":          "trace@example.com",
		"items":          []map[string]any{{"sku": sku, "quantity": qty}},
		"payment_method": method,
	}, "Idempotency-Key", fmt.Sprintf("trace-%d-%d", time.Now().UnixNano(), keys.Add(1)),
		"Authorization", "Bearer "+token)
}

// eventually polls cond every 100ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// notified waits until the invoice and the e-mail of order id exist, read
// with token: the order's customer's (404 until there are some) or an
// admin's.
func notified(t *testing.T, s *stack.Stack, token, id string) {
	t.Helper()
	eventually(t, 30*time.Second, "invoice and e-mail of order "+id, func() bool {
		_, inv := call(t, http.MethodGet, s.URL("notification", "/v1/invoices?order_id="+id), nil, "Authorization", "Bearer "+token)
		_, em := call(t, http.MethodGet, s.URL("notification", "/v1/emails?order_id="+id), nil, "Authorization", "Bearer "+token)
		i, _ := inv["invoices"].([]any)
		e, _ := em["emails"].([]any)
		return len(i) == 1 && len(e) == 1
	})
}
