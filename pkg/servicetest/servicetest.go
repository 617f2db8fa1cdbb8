// Package servicetest runs a service's run function inside a test, the way
// main runs it, on port 0: the address comes from the "listening" line that
// web.Serve logs, so no test guesses a free port that another process may
// take before the service listens on it.
package servicetest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// startTimeout is how long Start waits for the service to listen, and Stop
// for run to return: generous, for a shared machine.
const startTimeout = 60 * time.Second

// Service is a run function started by Start.
type Service struct {
	// Addr is the address the service listens on, host:port.
	Addr string
	// URL is "http://" + Addr.
	URL string

	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// Start calls run in a goroutine with a context that Stop (or the end of
// the test) cancels, and its log as stdout. run is the service's run with
// its other arguments bound; its environment must listen on port 0
// ("127.0.0.1:0") and log at info level or below, for the "listening" line.
// Start returns once the service listens, and fails t if run returns first
// or does not listen within a minute. At the end of the test the service
// is stopped and run must have returned nil.
func Start(t testing.TB, run func(ctx context.Context, stdout io.Writer) error) *Service {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := &addrLog{addr: make(chan string, 1)}
	s := &Service{cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- run(ctx, log) }()
	t.Cleanup(func() {
		if err := s.Stop(t); err != nil {
			t.Errorf("run = %v; want nil", err)
		}
	})
	select {
	case s.Addr = <-log.addr:
	case err := <-s.done:
		s.once.Do(func() {
			cancel()
			s.err = err
		})
		t.Fatalf("run returned before it listened: %v", err)
	case <-time.After(startTimeout):
		t.Fatalf("the service logged no \"listening\" line within %s (its address must be port 0 and LOG_LEVEL info)", startTimeout)
	}
	s.URL = "http://" + s.Addr
	return s
}

// Stop cancels run's context, as SIGTERM does, and returns run's error. It
// fails t when run does not return within a minute. Calling it again
// returns the same error.
func (s *Service) Stop(t testing.TB) error {
	t.Helper()
	s.once.Do(func() {
		s.cancel()
		select {
		case s.err = <-s.done:
		case <-time.After(startTimeout):
			t.Errorf("run did not return within %s of its context's end", startTimeout)
		}
	})
	return s.err
}

// Exited reports whether run has returned on its own (the service stopped
// without being told to), and its error, so a test that polls for
// something fails at once instead of at its deadline.
func (s *Service) Exited() (bool, error) {
	select {
	case err := <-s.done:
		s.once.Do(func() {
			s.cancel()
			s.err = err
		})
		return true, err
	default:
		return false, nil
	}
}

// Scrape returns what the service's GET /metrics answers, the Prometheus
// text format, and fails t unless it answers 200.
func (s *Service) Scrape(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d, %v; want 200:\n%s", resp.StatusCode, err, body)
	}
	return string(body)
}

// addrLog is the service's stdout: JSON log lines, of which it reads the
// address of the first "listening" one and drops the rest. slog writes a
// record with one Write, from any goroutine.
type addrLog struct {
	mu      sync.Mutex
	partial []byte
	addr    chan string
	found   bool
}

func (l *addrLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.found {
		return len(p), nil
	}
	l.partial = append(l.partial, p...)
	for {
		line, rest, ok := bytes.Cut(l.partial, []byte("\n"))
		if !ok {
			break
		}
		l.partial = rest
		var rec struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal(line, &rec) == nil && rec.Msg == "listening" && rec.Addr != "" {
			l.found, l.partial = true, nil
			l.addr <- rec.Addr
			break
		}
	}
	return len(p), nil
}

// RefusingAddr returns an address that accepts TCP connections and closes
// each at once, held until the test ends: a dependency that is down, at an
// address no other process can take meanwhile.
func RefusingAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// CheckLogHides fails t when config, logged the way run logs it at
// start-up (the "config" attribute of a JSON record), shows any of
// secrets. It returns the record, for checks of what it does show.
func CheckLogHides(t testing.TB, config slog.LogValuer, secrets ...string) string {
	t.Helper()
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("starting", "config", config)
	for _, secret := range secrets {
		if strings.Contains(b.String(), secret) {
			t.Errorf("start-up log %s shows the secret %q", b.String(), secret)
		}
	}
	return b.String()
}

// WaitFor polls cond until it holds, and fails t when it does not within
// the bounded wait, naming what it waited for.
func WaitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	waitFor(t, within, what, cond, func() {})
}

// WaitFor is the package's WaitFor for a condition on the running service:
// it also fails t at once when run returns meanwhile.
func (s *Service) WaitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	waitFor(t, within, what, cond, func() {
		if exited, err := s.Exited(); exited {
			t.Fatalf("run returned while waiting for %s: %v", what, err)
		}
	})
}

func waitFor(t testing.TB, within time.Duration, what string, cond func() bool, check func()) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		check()
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
