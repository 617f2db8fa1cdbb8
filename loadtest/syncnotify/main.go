// Command syncnotify is seed 000's "no queue" stack, assembled from the
// product's own parts: a reverse proxy in front of order that, after order
// answers a POST /v1/orders with 201, holds the answer until notification
// has made the order's invoice and sent its e-mail, and only then passes it
// on. The client so waits for the slow work, as it would if order made the
// invoice and sent the e-mail inside the request, and the benchmark's
// "patterns off" figures measure what synchronous notification costs,
// without a code path in the product that exists only for the benchmark.
//
// It polls notification's GET /v1/invoices?order_id= and
// GET /v1/emails?order_id= with the caller's own access token (a customer
// may read its own invoices and e-mails; a 404 is "none yet"), backing off
// from 2 ms to 20 ms.
// An order whose invoice or e-mail does not appear within SYNC_TIMEOUT is
// answered 504 with a problem body: a stack that loses work shows up as
// errors in the figures, not as fast orders. Every other request is
// proxied as it is.
//
// Environment: SYNC_ADDR (listen, 127.0.0.1:8090), SYNC_ORDER_URL and
// SYNC_NOTIFICATION_URL (base URLs, required), SYNC_TIMEOUT (10s).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/orderflow/orderflow/loadtest/internal/serve"
)

func main() {
	if err := run(context.Background(), os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "syncnotify:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	addr := getenv("SYNC_ADDR")
	if addr == "" {
		addr = "127.0.0.1:8090"
	}
	var missing []string
	order, err := baseURL(getenv, "SYNC_ORDER_URL", &missing)
	if err != nil {
		return err
	}
	notification, err := baseURL(getenv, "SYNC_NOTIFICATION_URL", &missing)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing environment: %v", missing)
	}
	timeout := 10 * time.Second
	if v := getenv("SYNC_TIMEOUT"); v != "" {
		if timeout, err = time.ParseDuration(v); err != nil {
			return fmt.Errorf("SYNC_TIMEOUT: %w", err)
		}
	}
	h := newHandler(order, notification, timeout, stderr)
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(stderr, "syncnotify listening on %s: order %s, waiting for notification %s (timeout %s)\n",
		addr, order, notification, timeout)
	return serve.Run(ctx, srv)
}

func baseURL(getenv func(string) string, name string, missing *[]string) (*url.URL, error) {
	v := getenv(name)
	if v == "" {
		*missing = append(*missing, name)
		return nil, nil
	}
	u, err := url.Parse(v)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("%s=%q: not a base URL", name, v)
	}
	return u, nil
}

// newHandler proxies to order and holds each created order's answer until
// notification has done its work for it.
func newHandler(order, notification *url.URL, timeout time.Duration, stderr io.Writer) http.Handler {
	// Every worker of the load keeps its connections: the proxy must not
	// be the one opening a TCP connection per request.
	transport := &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second}
	client := &http.Client{Transport: transport, Timeout: 5 * time.Second}
	w := waiter{client: client, notification: notification, timeout: timeout}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(order)
			pr.Out.Host = pr.In.Host
		},
		Transport: transport,
		ModifyResponse: func(resp *http.Response) error {
			req := resp.Request
			if req.Method != http.MethodPost || req.URL.Path != "/v1/orders" || resp.StatusCode != http.StatusCreated {
				return nil
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return fmt.Errorf("read order's answer: %w", err)
			}
			resp.Body = io.NopCloser(bytes.NewReader(body))
			var o struct {
				ID    string `json:"id"`
				Email string `json:"email"`
			}
			if err := json.Unmarshal(body, &o); err != nil || o.ID == "" {
				return fmt.Errorf("order's 201 carries no order id: %s", body)
			}
			// An order without an address gets no e-mail: its invoice is all.
			kinds := []string{"invoices", "emails"}
			if o.Email == "" {
				kinds = kinds[:1]
			}
			return w.wait(req.Context(), o.ID, req.Header.Get("Authorization"), kinds)
		},
		ErrorHandler: func(rw http.ResponseWriter, r *http.Request, err error) {
			fmt.Fprintf(stderr, "syncnotify: %s %s: %v\n", r.Method, r.URL.Path, err)
			status, code := http.StatusBadGateway, "bad_gateway"
			var late errNotDone
			if errors.As(err, &late) {
				status, code = http.StatusGatewayTimeout, "notification_timeout"
			}
			rw.Header().Set("Content-Type", "application/problem+json")
			rw.WriteHeader(status)
			_ = json.NewEncoder(rw).Encode(map[string]any{"type": "about:blank", "title": http.StatusText(status),
				"status": status, "detail": err.Error(), "code": code})
		},
	}
}

// errNotDone is the answer when notification did not finish in time.
type errNotDone struct{ what, orderID string }

func (e errNotDone) Error() string {
	return fmt.Sprintf("notification made no %s for order %s in time", e.what, e.orderID)
}

// waiter polls notification for an order's invoice and e-mail.
type waiter struct {
	client       *http.Client
	notification *url.URL
	timeout      time.Duration
}

// wait returns once notification lists something of each of kinds
// ("invoices", "emails") for orderID.
func (w waiter) wait(ctx context.Context, orderID, auth string, kinds []string) error {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	for _, what := range kinds {
		delay := 2 * time.Millisecond
		for {
			n, err := w.count(ctx, what, orderID, auth)
			if err != nil {
				return err
			}
			if n > 0 {
				break
			}
			select {
			case <-ctx.Done():
				return errNotDone{what: what, orderID: orderID}
			case <-time.After(delay):
			}
			delay = min(delay*3/2, 20*time.Millisecond)
		}
	}
	return nil
}

// count is how many invoices or e-mails notification lists for orderID.
func (w waiter) count(ctx context.Context, what, orderID, auth string) (int, error) {
	u := *w.notification
	u.Path = "/v1/" + what
	u.RawQuery = url.Values{"order_id": {orderID}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", auth)
	resp, err := w.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, errNotDone{what: what, orderID: orderID}
		}
		return 0, fmt.Errorf("GET %s: %w", u.Path, err)
	}
	defer resp.Body.Close()
	// notification answers 404 while an order has nothing of the caller's
	// yet: it cannot tell "not yet" from "not yours", so neither can we.
	if resp.StatusCode == http.StatusNotFound {
		_, _ = io.Copy(io.Discard, resp.Body)
		return 0, nil
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, fmt.Errorf("GET %s?order_id=%s = %d %s", u.Path, orderID, resp.StatusCode, b)
	}
	var list map[string][]json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return 0, fmt.Errorf("GET %s: %w", u.Path, err)
	}
	return len(list[what]), nil
}
