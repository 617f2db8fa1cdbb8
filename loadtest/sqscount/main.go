// Command sqscount stands between the benchmark's services and the SQS
// emulator and counts the API calls that pass, by action: the floor of one
// order (loadtest/bench) multiplies them by what a bare SDK call costs.
// Neither the services nor the emulator count their SQS calls, so the count
// has to be taken on the wire. It is a plain reverse proxy; the benchmark
// leaves its CPU out of every figure (it is measurement, not product) and
// says so.
//
// GET /_sqscount answers the counts so far as JSON, {"SendMessageBatch": n,
// …}, with the entries of batch calls under "<action>.entries". Every other
// request goes to SQSCOUNT_UPSTREAM unchanged.
//
// Environment: SQSCOUNT_ADDR (listen, 127.0.0.1:8095), SQSCOUNT_UPSTREAM
// (the emulator's base URL, required).
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
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/orderflow/orderflow/loadtest/internal/serve"
)

func main() {
	if err := run(context.Background(), os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "sqscount:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	addr := getenv("SQSCOUNT_ADDR")
	if addr == "" {
		addr = "127.0.0.1:8095"
	}
	up := getenv("SQSCOUNT_UPSTREAM")
	if up == "" {
		return errors.New("SQSCOUNT_UPSTREAM is not set: it is the SQS emulator's base URL")
	}
	upstream, err := url.Parse(up)
	if err != nil || upstream.Host == "" {
		return fmt.Errorf("SQSCOUNT_UPSTREAM=%q: not a base URL", up)
	}
	srv := &http.Server{Addr: addr, Handler: newHandler(upstream, &counts{n: map[string]int64{}}),
		ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(stderr, "sqscount listening on %s, upstream %s\n", addr, upstream)
	return serve.Run(ctx, srv)
}

// counts are the calls seen, by action.
type counts struct {
	mu sync.Mutex
	n  map[string]int64
}

func (c *counts) add(action string, entries int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[action]++
	if entries > 0 {
		c.n[action+".entries"] += int64(entries)
	}
}

func (c *counts) snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.n))
	for k, v := range c.n {
		out[k] = v
	}
	return out
}

func newHandler(upstream *url.URL, c *counts) http.Handler {
	// Long polls (ReceiveMessage waits up to 20 s) hold a connection each:
	// keep enough of them idle for every consumer of every stack.
	proxy := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(upstream) },
		Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/_sqscount" {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(c.snapshot())
			return
		}
		action, entries := classify(r)
		c.add(action, entries)
		proxy.ServeHTTP(w, r)
	})
}

// classify names the SQS action of r: the AWS JSON protocol's X-Amz-Target
// ("AmazonSQS.SendMessageBatch"), else the query protocol's Action. For
// the batch actions it counts the entries, reading the body and putting it
// back for the upstream.
func classify(r *http.Request) (string, int) {
	action := ""
	if t := r.Header.Get("X-Amz-Target"); t != "" {
		_, action, _ = strings.Cut(t, ".")
	}
	if !strings.HasSuffix(action, "Batch") && action != "" {
		return action, 0
	}
	body, err := io.ReadAll(r.Body)
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return "unreadable", 0
	}
	if action == "" {
		if v, err := url.ParseQuery(string(body)); err == nil && v.Get("Action") != "" {
			return v.Get("Action"), 0
		}
		return "other", 0
	}
	var in struct {
		Entries []json.RawMessage `json:"Entries"`
	}
	_ = json.Unmarshal(body, &in)
	return action, len(in.Entries)
}
