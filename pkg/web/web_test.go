package web_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5/middleware"
	"github.com/google/go-cmp/cmp"

	"github.com/orderflow/orderflow/pkg/web"
)

type item struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

type request struct {
	Name  string `json:"name"`
	Items []item `json:"items"`
}

func TestDecode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		contentType string
		body        string
		wantStatus  int
		wantCode    string
	}{
		{"valid", "application/json", `{"name":"a","items":[{"sku":"x","quantity":1}]}`, 0, ""},
		{"charset parameter", "application/json; charset=utf-8", `{"name":"a"}`, 0, ""},
		{"no content type", "", `{"name":"a"}`, 0, ""},
		{"wrong content type", "text/plain", `{"name":"a"}`, 415, "unsupported_media_type"},
		{"empty body", "application/json", ``, 400, "bad_json"},
		{"malformed", "application/json", `{"name":`, 400, "bad_json"},
		{"syntax error", "application/json", `{"name" "a"}`, 400, "bad_json"},
		{"unknown field", "application/json", `{"name":"a","admin":true}`, 400, "unknown_field"},
		{"wrong type", "application/json", `{"name":1}`, 400, "validation_failed"},
		{"not an object", "application/json", `[1,2]`, 400, "bad_json"},
		{"two values", "application/json", `{"name":"a"}{"name":"b"}`, 400, "bad_json"},
		{"trailing garbage", "application/json", `{"name":"a"} x`, 400, "bad_json"},
		{"too large", "application/json", `{"name":"` + strings.Repeat("a", web.MaxBodyBytes) + `"}`, 413, "body_too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tt.body))
			if tt.contentType != "" {
				r.Header.Set("Content-Type", tt.contentType)
			}
			var dst request
			err := web.Decode(r, web.MaxBodyBytes, &dst)
			if tt.wantStatus == 0 {
				if err != nil {
					t.Fatalf("Decode = %v; want nil", err)
				}
				return
			}
			p, ok := err.(*web.Problem)
			if !ok {
				t.Fatalf("Decode = %v (%T); want a *web.Problem", err, err)
			}
			if p.Status != tt.wantStatus || p.Code != tt.wantCode {
				t.Errorf("Decode = %d %s; want %d %s", p.Status, p.Code, tt.wantStatus, tt.wantCode)
			}
		})
	}
}

func TestWriteProblem(t *testing.T) {
	t.Parallel()
	w := httptest.NewRecorder()
	web.WriteProblem(w, web.NewProblem(http.StatusConflict, "out_of_stock", "SKU-1 is short").
		With("skus", []string{"SKU-1"}).With("order_id", "o1"))
	if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type = %q; want application/problem+json", ct)
	}
	var got map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"type": web.ProblemTypeBase + "out_of_stock", "title": "Conflict", "status": float64(409),
		"detail": "SKU-1 is short", "code": "out_of_stock", "skus": []any{"SKU-1"}, "order_id": "o1",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("problem body (-want +got):\n%s", diff)
	}
}

func TestRecoverer(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := web.NewRouter(log)
	h.Get("/panic", func(w http.ResponseWriter, r *http.Request) { panic("boom") })
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/panic", nil))
	if w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), `"code":"internal"`) {
		t.Errorf("panic answered %d %s; want a 500 problem", w.Code, w.Body)
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/nowhere", nil))
	if w.Code != http.StatusNotFound || w.Header().Get("Content-Type") != "application/problem+json" {
		t.Errorf("unknown route answered %d %q; want a 404 problem", w.Code, w.Header().Get("Content-Type"))
	}
}

// FuzzDecodeBytes checks that no input makes the decoder panic, and that
// every rejection is a 4xx problem.
func FuzzDecodeBytes(f *testing.F) {
	for _, s := range []string{`{"name":"a","items":[{"sku":"x","quantity":1}]}`, `{`, `[]`, `null`, `{"name":1}`, `{"x":1}`, `{} {}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var dst request
		err := web.DecodeBytes(body, &dst)
		if err == nil {
			return
		}
		p, ok := err.(*web.Problem)
		if !ok || p.Status < 400 || p.Status > 499 || p.Code == "" {
			t.Fatalf("DecodeBytes(%q) = %v; want a 4xx problem with a code", body, err)
		}
	})
}

func TestRouter_RequestIDCapped(t *testing.T) {
	t.Parallel()
	var got string
	h := web.NewRouter(slog.New(slog.DiscardHandler))
	h.Get("/", func(w http.ResponseWriter, r *http.Request) { got = middleware.GetReqID(r.Context()) })
	for _, tc := range []struct{ sent, want string }{
		{"abc-123", "abc-123"},
		{strings.Repeat("x", 65), ""},
		{"bad\x01id", ""},
		{"spaced id", ""},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("X-Request-Id", tc.sent)
		h.ServeHTTP(httptest.NewRecorder(), r)
		if tc.want != "" && got != tc.want || tc.want == "" && (got == tc.sent || got == "") {
			t.Errorf("X-Request-Id %q → request id %q; want %q (or a fresh one)", tc.sent, got, tc.want)
		}
	}
}

func TestDeadline(t *testing.T) {
	t.Parallel()
	limit := 5 * time.Second
	tests := []struct {
		header   string
		min, max time.Duration
	}{
		{header: "", min: 4900 * time.Millisecond, max: limit},
		{header: "1500", min: 1400 * time.Millisecond, max: 1500 * time.Millisecond},
		{header: "60000", min: 4900 * time.Millisecond, max: limit}, // never longer than the limit
		{header: "0", min: 4900 * time.Millisecond, max: limit},
		{header: "-5", min: 4900 * time.Millisecond, max: limit},
		{header: "1.5", min: 4900 * time.Millisecond, max: limit},
		{header: "9999999999999999999999", min: 4900 * time.Millisecond, max: limit},
	}
	for _, tt := range tests {
		var left time.Duration
		h := web.Deadline(limit)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			dl, ok := r.Context().Deadline()
			if !ok {
				t.Fatalf("Request-Timeout %q: no deadline", tt.header)
			}
			left = time.Until(dl)
		}))
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		if tt.header != "" {
			r.Header.Set(web.RequestTimeoutHeader, tt.header)
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
		if left < tt.min || left > tt.max {
			t.Errorf("Request-Timeout %q: deadline in %v; want %v–%v", tt.header, left, tt.min, tt.max)
		}
	}
}

// TestRequestLogger_ScrapesAtDebug: a scrape every few seconds must not
// bury the request lines at info level, yet stays visible at debug; a
// failed scrape is logged like any request.
func TestRequestLogger_ScrapesAtDebug(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		level   slog.Level
		status  int
		path    string
		logged  bool
		comment string
	}{
		{slog.LevelInfo, http.StatusOK, "/metrics", false, "scrape at info"},
		{slog.LevelDebug, http.StatusOK, "/metrics", true, "scrape at debug"},
		{slog.LevelInfo, http.StatusInternalServerError, "/metrics", true, "failed scrape"},
		{slog.LevelInfo, http.StatusOK, "/healthz", true, "probe"},
	} {
		var buf strings.Builder
		h := web.NewRouter(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: tc.level})))
		status := tc.status
		h.Get(tc.path, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) })
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, tc.path, nil))
		if got := strings.Contains(buf.String(), "msg=request"); got != tc.logged {
			t.Errorf("%s: request line logged = %v; want %v (log: %q)", tc.comment, got, tc.logged, buf.String())
		}
	}
}
