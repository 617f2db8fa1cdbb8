package servicetest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/orderflow/orderflow/pkg/web"
)

func TestStart_FindsTheAddressServeLogs(t *testing.T) {
	t.Parallel()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	srv := Start(t, func(ctx context.Context, stdout io.Writer) error {
		log := slog.New(slog.NewJSONHandler(stdout, nil))
		log.Info("starting", "addr", "not this one")
		return web.ListenAndServe(ctx, "127.0.0.1:0", 0, h, log)
	})
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatalf("GET %s: %v", srv.URL, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTeapot {
		t.Errorf("GET %s = %d; want 418 from the handler", srv.URL, resp.StatusCode)
	}
	if exited, err := srv.Exited(); exited {
		t.Fatalf("Exited = true, %v while serving", err)
	}
	if err := srv.Stop(t); err != nil {
		t.Fatalf("Stop = %v; want nil", err)
	}
	if _, err := net.DialTimeout("tcp", srv.Addr, 5*time.Second); err == nil {
		t.Errorf("%s still accepts connections after Stop", srv.Addr)
	}
}

// TestService_Scrape: the body of a 200, and a failure for anything else.
func TestService_Scrape(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "up 1\n") })
	srv := Start(t, func(ctx context.Context, stdout io.Writer) error {
		return web.ListenAndServe(ctx, "127.0.0.1:0", 0, mux, slog.New(slog.NewJSONHandler(stdout, nil)))
	})
	if got := srv.Scrape(t); got != "up 1\n" {
		t.Errorf("Scrape = %q; want %q", got, "up 1\n")
	}

	missing := Start(t, func(ctx context.Context, stdout io.Writer) error {
		return web.ListenAndServe(ctx, "127.0.0.1:0", 0, http.NotFoundHandler(), slog.New(slog.NewJSONHandler(stdout, nil)))
	})
	ft := &fatalT{TB: t}
	done := make(chan struct{})
	go func() { // Fatal ends the goroutine it is called on
		defer close(done)
		missing.Scrape(ft)
	}()
	<-done
	if !ft.failed {
		t.Error("Scrape of a 404 did not fail the test")
	}
}

// fatalT records a Fatal instead of ending the test.
type fatalT struct {
	testing.TB
	failed bool
}

func (f *fatalT) Helper()               {}
func (f *fatalT) Fatal(args ...any)     { f.failed = true; runtime.Goexit() }
func (f *fatalT) Fatalf(string, ...any) { f.failed = true; runtime.Goexit() }

// TestAddrLog_SplitWrites: a line may arrive in pieces.
func TestAddrLog_SplitWrites(t *testing.T) {
	t.Parallel()
	l := &addrLog{addr: make(chan string, 1)}
	line := `{"msg":"listening","addr":"127.0.0.1:4321"}` + "\n"
	for _, part := range []string{`{"msg":"other"}` + "\n" + line[:10], line[10:30], line[30:]} {
		if n, err := l.Write([]byte(part)); n != len(part) || err != nil {
			t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(part))
		}
	}
	select {
	case got := <-l.addr:
		if got != "127.0.0.1:4321" {
			t.Errorf("addr = %q; want 127.0.0.1:4321", got)
		}
	default:
		t.Fatal("no address found")
	}
}

func TestRefusingAddr(t *testing.T) {
	t.Parallel()
	addr := RefusingAddr(t)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("GET %s answered %d; want a failed connection", addr, resp.StatusCode)
	}
}

// fatalRecorder is a testing.TB whose Fatalf records the message and ends
// the goroutine, as testing's does.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// TestWaitFor: it returns once the condition holds, and fails naming what
// it waited for when the condition never does.
func TestWaitFor(t *testing.T) {
	t.Parallel()
	calls := 0
	WaitFor(t, time.Minute, "the third call", func() bool { calls++; return calls == 3 })
	if calls != 3 {
		t.Errorf("WaitFor returned after %d calls; want 3", calls)
	}

	r := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		WaitFor(r, 30*time.Millisecond, "nothing", func() bool { return false })
	}()
	<-done
	if want := "timed out after 30ms waiting for nothing"; r.msg != want {
		t.Errorf("WaitFor(never) failed with %q; want %q", r.msg, want)
	}
}

// TestService_WaitFor: a wait on a service that stops by itself fails at
// once, saying so, instead of at its deadline.
func TestService_WaitFor(t *testing.T) {
	t.Parallel()
	quit := make(chan struct{})
	srv := Start(t, func(ctx context.Context, stdout io.Writer) error {
		log := slog.New(slog.NewJSONHandler(stdout, nil))
		ctx, cancel := context.WithCancel(ctx)
		go func() { <-quit; cancel() }()
		return web.ListenAndServe(ctx, "127.0.0.1:0", 0, http.NotFoundHandler(), log)
	})
	srv.WaitFor(t, time.Minute, "a true condition", func() bool { return true })
	close(quit)

	r := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.WaitFor(r, time.Hour, "nothing", func() bool { return false })
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("WaitFor on a stopped service still waits after a minute")
	}
	if want := "run returned while waiting for nothing: <nil>"; r.msg != want {
		t.Errorf("WaitFor(stopped) failed with %q; want %q", r.msg, want)
	}
}
