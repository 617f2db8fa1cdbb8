package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Check is one readiness check: it returns nil when the dependency answers.
type Check func(ctx context.Context) error

// Healthz answers 200 while the process is alive.
func Healthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

// Readyz answers 200 when every named check passes within two seconds, else
// 503 with the failing checks.
func Readyz(checks map[string]Check) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		failed := map[string]string{}
		for name, check := range checks {
			if err := check(ctx); err != nil {
				failed[name] = err.Error()
			}
		}
		if len(failed) > 0 {
			WriteProblem(w, NewProblem(http.StatusServiceUnavailable, "not_ready",
				"a dependency does not answer").With("checks", failed))
			return
		}
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
}

// NewServer returns an http.Server with the timeouts every service uses, so
// no slow client can hold a connection forever.
func NewServer(addr string, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		// 16 KiB of headers: a bearer token is about 1 KiB; Go's default
		// (1 MiB) lets one request hold a megabyte per connection.
		MaxHeaderBytes: 16 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// ShutdownGrace is how long ListenAndServe lets the requests in flight
// finish once shutdown begins.
const ShutdownGrace = 10 * time.Second

// ListenAndServe is how every service serves its API and runs its
// background loops: h on addr behind a Drainer with the given drain
// period, with NewServer's timeouts, until ctx is done (SIGTERM); then it
// drains and shuts down within ShutdownGrace. Each loop runs in its own
// goroutine on a context that ends once the server has shut down, so a
// loop keeps working while requests drain (an outbox relay publishes what
// they wrote); ListenAndServe returns only after every loop has, so run may
// then close the pools they use. The address listened on is logged
// ("listening", addr), so a service on port 0 tells where it is.
func ListenAndServe(ctx context.Context, addr string, drain time.Duration, h http.Handler, log *slog.Logger, loops ...func(context.Context)) error {
	loopCtx, stopLoops := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopLoops()
	for _, loop := range loops {
		wg.Go(func() { loop(loopCtx) })
	}
	d := NewDrainer(drain, log)
	return Serve(d.Context(ctx), NewServer(addr, d.Handler(h), log), log, ShutdownGrace)
}

// Serve listens on srv.Addr and serves until ctx is done, then shuts down
// gracefully: it stops accepting, lets in-flight requests finish for up to
// grace, and returns. A failure to listen is returned at once. Behind a load
// balancer, pass a Drainer's Context as ctx, so the balancer stops routing
// to the process before it stops accepting.
func Serve(ctx context.Context, srv *http.Server, log *slog.Logger, grace time.Duration) error {
	ln, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", srv.Addr, err)
	}
	log.InfoContext(ctx, "listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.InfoContext(ctx, "shutting down", "grace", grace.String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// Drainer takes a replica out of its load balancer before it stops. When
// the context handed to Context is done (SIGTERM), the Drainer starts
// answering GET /readyz with 503, so HAProxy's health checks or a
// Kubernetes readiness probe stop sending new requests, while the server
// keeps serving whatever still arrives; only after the drain period does
// the context it returned end, and Serve then shuts the server down with
// its grace deadline for the requests in flight. Without this, a replica
// that stops listening at once makes the balancer discover it by failed
// connections.
type Drainer struct {
	period   time.Duration
	log      *slog.Logger
	draining atomic.Bool
}

// NewDrainer returns a Drainer that keeps serving for period after
// shutdown begins. Behind a load balancer that checks /readyz every
// interval and takes a replica out after fall failures, period must exceed
// interval × fall; 0 suits a process nobody balances to (and Kubernetes,
// whose preStop sleep already covers the endpoint removal).
func NewDrainer(period time.Duration, log *slog.Logger) *Drainer {
	return &Drainer{period: period, log: log}
}

// Handler wraps a service's handler. While draining, GET /readyz answers
// 503 "draining" without running the dependency checks, and every other
// answer carries "Connection: close", so keep-alive clients (the balancer's
// pooled connections among them) reconnect and land on another replica
// instead of racing the final close.
func (d *Drainer) Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !d.draining.Load() {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Connection", "close")
		if r.URL.Path == "/readyz" {
			WriteProblem(w, NewProblem(http.StatusServiceUnavailable, "draining",
				"the process is shutting down"))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Context returns the context to hand to Serve: it ends period after ctx
// does, and the Drainer reports draining from the moment ctx ends. Values
// of ctx are kept.
func (d *Drainer) Context(ctx context.Context) context.Context {
	out, cancel := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		defer cancel()
		<-ctx.Done()
		d.draining.Store(true)
		if d.period <= 0 {
			return
		}
		d.log.InfoContext(out, "draining: /readyz answers 503, still serving", "drain", d.period.String())
		t := time.NewTimer(d.period)
		defer t.Stop()
		<-t.C
	}()
	return out
}
