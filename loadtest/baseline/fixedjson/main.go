// Command fixedjson is the floor of the trust benchmark: a bare net/http
// handler that answers every GET /v1/products/{sku} with one recorded
// answer, byte for byte the headers and body inventory sent for a cached
// product read (ETag, Cache-Control, X-Cache and the rest). No router,
// middleware, cache or token check: put behind the gateway, it shows what
// the proxy hop costs a service that does nothing, so the gateway's share
// of a real service's throughput can be read against it.
//
// BASELINE_RESPONSE names the recording: header lines ("Name: value"), a
// blank line, then the body. GET /healthz answers 200 for the gateway's
// health check.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/orderflow/orderflow/loadtest/internal/serve"
)

func main() {
	if err := run(context.Background(), os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "fixedjson:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	addr := getenv("BASELINE_ADDR")
	if addr == "" {
		addr = "127.0.0.1:8097"
	}
	path := getenv("BASELINE_RESPONSE")
	if path == "" {
		return errors.New("BASELINE_RESPONSE is not set: it names the recorded answer to replay")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read the recorded answer: %w", err)
	}
	rec, err := parseRecording(b)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	srv := &http.Server{Addr: addr, Handler: newHandler(rec), ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(stderr, "fixedjson listening on %s (%d-byte body, %d headers)\n", addr, len(rec.body), len(rec.header))
	return serve.Run(ctx, srv)
}

// recording is the answer to replay.
type recording struct {
	header http.Header
	body   []byte
}

// parseRecording reads header lines, a blank line and the body. Date and
// Content-Length are dropped: net/http writes its own Date, and the length
// is the body's.
func parseRecording(b []byte) (recording, error) {
	r := bufio.NewReader(bytes.NewReader(b))
	h, err := textproto.NewReader(r).ReadMIMEHeader()
	if err != nil {
		return recording{}, fmt.Errorf("headers: %w", err)
	}
	body, err := io.ReadAll(r)
	if err != nil {
		return recording{}, err
	}
	if len(body) == 0 {
		return recording{}, errors.New("the recording has no body")
	}
	header := http.Header(h)
	header.Del("Date")
	header.Del("Content-Length")
	header.Set("Content-Length", strconv.Itoa(len(body)))
	return recording{header: header, body: body}, nil
}

// newHandler answers product reads with rec. The header values are shared
// by every response and only read by net/http, so nothing is copied but the
// map entries.
func newHandler(rec recording) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			w.WriteHeader(http.StatusOK)
			return
		}
		if !strings.HasPrefix(r.URL.Path, "/v1/products/") || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		for k, v := range rec.header {
			h[k] = v
		}
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(rec.body)
		}
	})
}
