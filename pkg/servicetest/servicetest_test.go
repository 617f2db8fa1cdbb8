package servicetest

import (
	"context"
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
