package web_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/orderflow/orderflow/pkg/servicetest"
	"github.com/orderflow/orderflow/pkg/web"
)

// get answers the status and Connection header of GET url, or status 0
// when the connection fails.
func get(t *testing.T, client *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	conn := resp.Header.Get("Connection")
	if resp.Close {
		conn = "close"
	}
	return resp.StatusCode, conn
}

// TestDrainer_Serve walks through a shutdown: after the signal /readyz
// fails while every other route keeps answering, a request in flight
// finishes, and only after the drain period does the listener close.
func TestDrainer_Serve(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.DiscardHandler)
	release := make(chan struct{})
	started := make(chan struct{})
	mux := http.NewServeMux()
	mux.Handle("GET /readyz", web.Readyz(nil))
	mux.Handle("GET /healthz", web.Healthz())
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		w.WriteHeader(http.StatusOK)
	})
	const period = 2 * time.Second
	d := web.NewDrainer(period, log)
	srv := servicetest.Start(t, func(ctx context.Context, stdout io.Writer) error {
		log := slog.New(slog.NewJSONHandler(stdout, nil))
		return web.Serve(d.Context(ctx), web.NewServer("127.0.0.1:0", d.Handler(mux), log), log, 5*time.Second)
	})
	client := &http.Client{Timeout: 5 * time.Second}
	base := srv.URL
	if st, conn := get(t, client, base+"/readyz"); st != http.StatusOK || conn == "close" {
		t.Fatalf("before shutdown: GET /readyz = %d (Connection %q); want 200, kept alive", st, conn)
	}

	slow := make(chan int, 1)
	go func() {
		st, _ := get(t, client, base+"/slow")
		slow <- st
	}()
	<-started
	stopped := time.Now()
	served := make(chan error, 1)
	go func() { served <- srv.Stop(t) }() // SIGTERM, then wait for Serve
	// /readyz fails from the signal on, all through the drain period.
	deadline := stopped.Add(period)
	for {
		st, conn := get(t, client, base+"/readyz")
		if st == http.StatusServiceUnavailable && conn == "close" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("draining: GET /readyz = %d (Connection %q); want 503, close", st, conn)
		}
		time.Sleep(time.Millisecond)
	}
	if st, conn := get(t, client, base+"/healthz"); st != http.StatusOK || conn != "close" {
		t.Errorf("draining: GET /healthz = %d (Connection %q); want 200, close", st, conn)
	}
	close(release)
	if st := <-slow; st != http.StatusOK {
		t.Errorf("request in flight during the drain = %d; want 200", st)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve = %v; want nil", err)
	}
	if waited := time.Since(stopped); waited < period {
		t.Errorf("Serve returned %v after shutdown began; want at least the drain period %v", waited, period)
	}
	if st, _ := get(t, client, base+"/healthz"); st != 0 {
		t.Errorf("after Serve returned: GET /healthz = %d; want a refused connection", st)
	}
}

// TestDrainer_NoPeriod: with no drain period Serve shuts down as soon as
// ctx ends, as it did before the Drainer existed.
func TestDrainer_NoPeriod(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.DiscardHandler)
	d := web.NewDrainer(0, log)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	dctx := d.Context(ctx)
	select {
	case <-dctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Context with no drain period did not end within 5s of its parent")
	}
	w := httptest.NewRecorder()
	d.Handler(web.Healthz()).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz after shutdown began = %d; want 503 draining", w.Code)
	}
	if !errors.Is(dctx.Err(), context.Canceled) {
		t.Errorf("Context().Err() = %v; want context.Canceled", dctx.Err())
	}
}

// TestDrainer_Handler covers the wrapper alone: before the drain it is
// transparent, /readyz included.
func TestDrainer_Handler(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.DiscardHandler)
	d := web.NewDrainer(time.Hour, log)
	mux := http.NewServeMux()
	mux.Handle("GET /readyz", web.Readyz(map[string]web.Check{
		"db": func(context.Context) error { return errors.New("down") },
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	srv := web.NewServer(addr, d.Handler(mux), log)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	st, _ := get(t, http.DefaultClient, "http://"+addr+"/readyz")
	if st != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz with a failing check = %d; want 503 from the service's own checks", st)
	}
	if st, _ := get(t, http.DefaultClient, "http://"+addr+"/nowhere"); st != http.StatusNotFound {
		t.Errorf("GET /nowhere = %d; want 404", st)
	}
}
