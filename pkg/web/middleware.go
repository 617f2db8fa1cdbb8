package web

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
)

// maxRequestIDLen bounds a client-sent X-Request-Id.
const maxRequestIDLen = 64

// requestID is chi's middleware.RequestID, which takes a client's
// X-Request-Id as it is: an id longer than 64 bytes or with anything but
// printable ASCII is dropped and a new one made, so a client cannot write
// megabytes or control characters into every log line.
func requestID(next http.Handler) http.Handler {
	h := middleware.RequestID(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := r.Header.Get(middleware.RequestIDHeader); id != "" && !printableID(id) {
			r.Header.Del(middleware.RequestIDHeader)
		}
		h.ServeHTTP(w, r)
	})
}

func printableID(id string) bool {
	if len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// Recoverer turns a panic in a handler into a logged 500 problem, so no panic
// reaches a client as a dropped connection. http.ErrAbortHandler is re-raised:
// it is how a handler deliberately aborts a response.
func Recoverer(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				rec := recover()
				if rec == nil {
					return
				}
				if rec == http.ErrAbortHandler {
					panic(rec)
				}
				log.ErrorContext(r.Context(), "panic in handler",
					"panic", fmt.Sprint(rec), "stack", string(debug.Stack()),
					"method", r.Method, "path", r.URL.Path)
				WriteProblem(w, NewProblem(http.StatusInternalServerError, "internal", "internal error"))
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// scrapePath is where Prometheus scrapes every service, every few seconds.
const scrapePath = "/metrics"

// RequestLogger logs one line per request, after it is served: at info
// level, or at warn for a 5xx. A successful scrape of /metrics is logged at
// debug: one every few seconds would bury the lines a person is looking
// for. A line below the logger's level is not even built.
func RequestLogger(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			start := time.Now()
			next.ServeHTTP(ww, r)
			route := r.URL.Path
			if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
				route = rc.RoutePattern()
			}
			level := slog.LevelInfo
			switch {
			case ww.Status() >= 500:
				level = slog.LevelWarn
			case route == scrapePath && ww.Status() < 400:
				level = slog.LevelDebug
			}
			if !log.Enabled(r.Context(), level) {
				return
			}
			log.Log(r.Context(), level, "request",
				"method", r.Method, "route", route, "path", r.URL.Path,
				"status", ww.Status(), "bytes", ww.BytesWritten(),
				"duration_ms", float64(time.Since(start).Microseconds())/1000,
				"request_id", middleware.GetReqID(r.Context()))
		})
	}
}

// NewRouter returns a chi router with the middleware every service uses, in
// the order the house style fixes: request id, logger, recoverer. The
// client address is set before, by ClientAddr, in main.
// Unknown routes and methods answer with problem bodies.
func NewRouter(log *slog.Logger) *chi.Mux {
	r := chi.NewRouter()
	r.Use(requestID, RequestLogger(log), Recoverer(log))
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		WriteProblem(w, NewProblem(http.StatusNotFound, "not_found", "no such route: "+r.URL.Path))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		WriteProblem(w, NewProblem(http.StatusMethodNotAllowed, "method_not_allowed",
			r.Method+" is not allowed on "+r.URL.Path))
	})
	return r
}

// ParsePrefixes parses a comma-separated list of IP addresses and CIDR
// prefixes (TRUSTED_PROXIES): "10.0.0.0/8, 127.0.0.1".
func ParsePrefixes(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an IP address nor a CIDR prefix", f)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// ClientAddr sets r.RemoteAddr to the client's address. X-Forwarded-For is
// believed only when the connection comes from one of trusted (the
// gateway, the load balancer): then the client is the right-most address
// in it that is not itself a trusted proxy. From anyone else the header is
// ignored, so a client cannot choose the address it is rate-limited by.
// X-Real-IP and True-Client-IP are never read.
func ClientAddr(trusted []netip.Prefix) func(http.Handler) http.Handler {
	isTrusted := func(a netip.Addr) bool {
		for _, p := range trusted {
			if p.Contains(a.Unmap()) {
				return true
			}
		}
		return false
	}
	return func(next http.Handler) http.Handler {
		if len(trusted) == 0 {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host, _, err := net.SplitHostPort(r.RemoteAddr)
			if err != nil {
				host = r.RemoteAddr
			}
			peer, err := netip.ParseAddr(host)
			xff := r.Header.Values("X-Forwarded-For")
			if err != nil || !isTrusted(peer) || len(xff) == 0 {
				next.ServeHTTP(w, r)
				return
			}
			hops := strings.Split(strings.Join(xff, ","), ",")
			for i := len(hops) - 1; i >= 0; i-- {
				a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
				if err != nil {
					break // a garbled hop: stop at the last address we can trust
				}
				if !isTrusted(a) || i == 0 {
					r.RemoteAddr = net.JoinHostPort(a.Unmap().String(), "0")
					break
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// RequestTimeoutHeader carries the caller's remaining budget for a call, in
// whole milliseconds. pkg/resilience sets it on every attempt it sends, so a
// downstream stops working when its caller has stopped waiting.
const RequestTimeoutHeader = "Request-Timeout"

// Deadline bounds every request it wraps by limit, or by the caller's
// Request-Timeout when that is shorter. A value that is not a positive
// number of milliseconds is ignored: it can only ever shorten the deadline,
// so any caller may send it.
func Deadline(limit time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			d := limit
			if ms, err := strconv.ParseInt(r.Header.Get(RequestTimeoutHeader), 10, 64); err == nil && ms > 0 &&
				ms < int64(limit/time.Millisecond) {
				d = time.Duration(ms) * time.Millisecond
			}
			ctx, cancel := context.WithTimeout(r.Context(), d)
			defer cancel()
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}
