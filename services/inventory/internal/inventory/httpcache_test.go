package inventory

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/orderflow/orderflow/pkg/ratelimit"
)

func TestNoneMatch(t *testing.T) {
	t.Parallel()
	const etag = `"abc"`
	tests := []struct {
		name   string
		values []string
		want   bool
	}{
		{name: "absent", values: nil, want: false},
		{name: "exact", values: []string{`"abc"`}, want: true},
		{name: "weak matches strong", values: []string{`W/"abc"`}, want: true},
		{name: "other", values: []string{`"abd"`}, want: false},
		{name: "list", values: []string{`"x", W/"y",  "abc"`}, want: true},
		{name: "list without", values: []string{`"x","y"`}, want: false},
		{name: "several lines", values: []string{`"x"`, `"abc"`}, want: true},
		{name: "star", values: []string{`*`}, want: true},
		{name: "comma inside tag", values: []string{`"a,b", "abc"`}, want: true},
		{name: "unquoted is malformed", values: []string{`abc`}, want: false},
		{name: "unterminated", values: []string{`"abc`}, want: false},
		{name: "prefix only", values: []string{`"ab"`}, want: false},
		{name: "empty", values: []string{``}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := noneMatch(tt.values, etag); got != tt.want {
				t.Errorf("noneMatch(%q) = %v; want %v", tt.values, got, tt.want)
			}
		})
	}
}

func TestAcceptsGzip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		header string
		want   bool
	}{
		{"", false},
		{"gzip", true},
		{"deflate, gzip;q=0.5", true},
		{"br, GZIP", true},
		{"gzip;q=0", false},
		{"gzip; q=0.0", false},
		{"*", true},
		{"identity", false},
	}
	for _, tt := range tests {
		if got := acceptsGzip([]string{tt.header}); got != tt.want {
			t.Errorf("acceptsGzip(%q) = %v; want %v", tt.header, got, tt.want)
		}
	}
}

// raw sends a request and returns the recorder, for header and body checks.
func raw(h http.Handler, method, path string, header map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestHandler_ProductETag(t *testing.T) {
	t.Parallel()
	env := newCachedEnv(t, map[string]int{"A": 5})

	first := raw(env.h, "GET", "/v1/products/A", nil)
	etag := first.Header().Get("ETag")
	sum := sha256.Sum256(first.Body.Bytes())
	if want := `"` + hex.EncodeToString(sum[:16]) + `"`; etag != want {
		t.Fatalf("ETag = %s; want %s (hash of the body bytes)", etag, want)
	}
	if cc := first.Header().Get("Cache-Control"); cc != "public, max-age=5" {
		t.Errorf("Cache-Control = %q", cc)
	}
	// A HIT serves the same bytes, so the same tag, as the MISS.
	second := raw(env.h, "GET", "/v1/products/A", nil)
	if second.Header().Get("X-Cache") != "HIT" || second.Header().Get("ETag") != etag || !bytes.Equal(second.Body.Bytes(), first.Body.Bytes()) {
		t.Errorf("HIT = %s %s %q; want the MISS's tag and bytes", second.Header().Get("X-Cache"), second.Header().Get("ETag"), second.Body)
	}

	for _, inm := range []string{etag, "W/" + etag, `"nope", ` + etag, "*"} {
		rec := raw(env.h, "GET", "/v1/products/A", map[string]string{"If-None-Match": inm})
		if rec.Code != http.StatusNotModified || rec.Body.Len() != 0 || rec.Header().Get("ETag") != etag ||
			rec.Header().Get("Cache-Control") == "" {
			t.Errorf("If-None-Match %s = %d, body %q, ETag %q; want 304, empty, %s", inm, rec.Code, rec.Body, rec.Header().Get("ETag"), etag)
		}
	}
	if rec := raw(env.h, "GET", "/v1/products/A", map[string]string{"If-None-Match": `"nope"`}); rec.Code != 200 {
		t.Errorf("non-matching If-None-Match = %d; want 200", rec.Code)
	}
	if rec := raw(env.h, "GET", "/v1/products/NOPE", map[string]string{"If-None-Match": "*"}); rec.Code != 404 {
		t.Errorf("If-None-Match * on a missing product = %d; want 404", rec.Code)
	}

	// A stock change changes the representation: the old tag no longer matches.
	if code, _, _ := do(t, env.h, call{method: "PUT", path: "/v1/products/A/stock", body: `{"available":6}`, header: admin()}); code != 200 {
		t.Fatalf("PUT = %d", code)
	}
	rec := raw(env.h, "GET", "/v1/products/A", map[string]string{"If-None-Match": etag})
	if rec.Code != 200 || rec.Header().Get("ETag") == etag {
		t.Errorf("after stock change = %d, ETag %s; want 200 with a new tag", rec.Code, rec.Header().Get("ETag"))
	}
}

func TestHandler_ProductListCaching(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	if _, err := NewStore(pool).Seed(t.Context(), 150); err != nil {
		t.Fatalf("Seed: %v", err)
	}
	h := NewHandler(discardLogger(), NewService(NewStore(pool), nil, testTTL), nil, testAuthn, nil)

	plain := raw(h, "GET", "/v1/products?limit=100", nil)
	etag := plain.Header().Get("ETag")
	if plain.Code != 200 || etag == "" || plain.Header().Get("Content-Encoding") != "" {
		t.Fatalf("plain list = %d, ETag %q, encoding %q", plain.Code, etag, plain.Header().Get("Content-Encoding"))
	}
	if v := plain.Header().Get("Vary"); v != "Accept-Encoding" {
		t.Errorf("Vary = %q; want Accept-Encoding", v)
	}

	gz := raw(h, "GET", "/v1/products?limit=100", map[string]string{"Accept-Encoding": "gzip, br"})
	if gz.Header().Get("Content-Encoding") != "gzip" || gz.Header().Get("ETag") != etag || gz.Header().Get("Vary") != "Accept-Encoding" {
		t.Fatalf("gzip list headers = %v", gz.Header())
	}
	zr, err := gzip.NewReader(gz.Body)
	if err != nil {
		t.Fatalf("gzip reader: %v", err)
	}
	body, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	if diff := cmp.Diff(plain.Body.String(), string(body)); diff != "" {
		t.Errorf("gunzipped body differs (-plain +gzip):\n%s", diff)
	}
	if gz.Body.Len() >= plain.Body.Len()/2 {
		t.Errorf("gzip body %d bytes for %d plain; want at least halved", gz.Body.Len(), plain.Body.Len())
	}

	for _, hdr := range []map[string]string{
		{"If-None-Match": etag},
		{"If-None-Match": etag, "Accept-Encoding": "gzip"},
	} {
		rec := raw(h, "GET", "/v1/products?limit=100", hdr)
		if rec.Code != 304 || rec.Body.Len() != 0 || rec.Header().Get("ETag") != etag || rec.Header().Get("Content-Encoding") != "" {
			t.Errorf("list revalidation %v = %d, %d bytes, %v; want bodiless 304 with ETag", hdr, rec.Code, rec.Body.Len(), rec.Header())
		}
	}
	// A different page is a different representation.
	other := raw(h, "GET", "/v1/products?limit=99", map[string]string{"If-None-Match": etag})
	if other.Code != 200 || other.Header().Get("ETag") == etag {
		t.Errorf("other page with first page's tag = %d; want 200 with its own tag", other.Code)
	}
	// Small pages are not worth compressing.
	small := raw(h, "GET", "/v1/products?limit=1", map[string]string{"Accept-Encoding": "gzip"})
	if small.Header().Get("Content-Encoding") != "" {
		t.Errorf("1-item page was compressed")
	}
}

// TestHandler_RateLimitWiring checks which routes the limiter guards: the
// public catalogue reads only.
func TestHandler_RateLimitWiring(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	addProducts(t, pool, map[string]int{"A": 100})
	rdb, prefix := newTestRedis(t)
	limit := ratelimit.NewLimiter(rdb, strings.TrimSuffix(prefix, ":"), redis_rate.Limit{Rate: 1, Burst: 2, Period: time.Minute}, discardLogger())
	scrape := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "up 1\n") })
	h := NewHandler(discardLogger(), NewService(NewStore(pool), nil, testTTL), scrape, testAuthn, limit.Handler)
	t.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, "rate:"+prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
	})

	for i, want := range []int{200, 200, 429, 429} {
		rec := raw(h, "GET", "/v1/products/A", nil)
		if rec.Code != want || rec.Header().Get("RateLimit-Limit") != "2" {
			t.Errorf("product read %d = %d, RateLimit-Limit %q; want %d, 2", i+1, rec.Code, rec.Header().Get("RateLimit-Limit"), want)
		}
	}
	if rec := raw(h, "GET", "/v1/products", nil); rec.Code != 429 {
		t.Errorf("list read by the same client = %d; want 429", rec.Code)
	}
	// Prometheus scrapes every few seconds from one address: never limited.
	for range 3 {
		if rec := raw(h, "GET", "/metrics", nil); rec.Code != 200 || rec.Body.String() != "up 1\n" || rec.Header().Get("RateLimit-Limit") != "" {
			t.Errorf("GET /metrics = %d %q, RateLimit-Limit %q; want 200 from the metrics handler, unlimited",
				rec.Code, rec.Body.String(), rec.Header().Get("RateLimit-Limit"))
		}
	}
	for _, c := range []call{
		{method: "GET", path: "/healthz"},
		{method: "GET", path: "/readyz"},
		{method: "PUT", path: "/v1/products/A/stock", body: `{"available":5}`, header: admin()},
		{method: "POST", path: "/v1/reservations", body: `{"order_id":"` + uuid.Must(uuid.NewV7()).String() + `","items":[{"sku":"A","quantity":1}]}`},
	} {
		code, _, hdr := do(t, h, c)
		if code == 429 || hdr.Get("RateLimit-Limit") != "" {
			t.Errorf("%s %s = %d with RateLimit-Limit %q; want it unlimited", c.method, c.path, code, hdr.Get("RateLimit-Limit"))
		}
	}
}
