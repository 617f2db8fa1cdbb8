package telemetry

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// debugHandler serves the runtime profiles of net/http/pprof under
// /debug/pprof/. It is meant for a listener of its own (Config.DebugAddr),
// never for the API's: a profile shows the code and costs CPU to take.
func debugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

// serveDebug starts debugHandler on addr and returns the function that
// stops it. The listener is opened here, so a taken port fails Setup.
func serveDebug(addr string) (stop func(context.Context) error, _ error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug listener: %w", err)
	}
	// WriteTimeout is longer than the longest profile a caller may ask
	// for (?seconds=60).
	srv := &http.Server{Handler: debugHandler(), ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 90 * time.Second}
	// Serve returns ErrServerClosed after Shutdown; any other error ends
	// only the profiles, never the service.
	go func() { _ = srv.Serve(ln) }()
	return srv.Shutdown, nil
}
