package web

import (
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
)

// RequireAdmin lets a request through only with "Authorization: Bearer
// <token>". An empty token disables the admin routes: every call gets 401.
func RequireAdmin(token string) func(http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got := []byte(r.Header.Get("Authorization"))
			if token == "" || subtle.ConstantTimeCompare(got, want) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="orderflow-admin"`)
				WriteProblem(w, NewProblem(http.StatusUnauthorized, "unauthorized",
					"admin calls need Authorization: Bearer $ADMIN_TOKEN"))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
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

// RequestLogger logs one line per request, after it is served: at info
// level, or at warn for a 5xx. A line below the logger's level is not even
// built.
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
			if ww.Status() >= 500 {
				level = slog.LevelWarn
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
// the order the house style fixes: request id, real IP, logger, recoverer.
// Unknown routes and methods answer with problem bodies.
func NewRouter(log *slog.Logger) *chi.Mux {
	r := chi.NewRouter()
	r.Use(middleware.RequestID, middleware.RealIP, RequestLogger(log), Recoverer(log))
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		WriteProblem(w, NewProblem(http.StatusNotFound, "not_found", "no such route: "+r.URL.Path))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		WriteProblem(w, NewProblem(http.StatusMethodNotAllowed, "method_not_allowed",
			r.Method+" is not allowed on "+r.URL.Path))
	})
	return r
}
