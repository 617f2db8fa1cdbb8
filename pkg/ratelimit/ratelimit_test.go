package ratelimit

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/orderflow/orderflow/pkg/auth"
	"github.com/orderflow/orderflow/pkg/tcpproxy"
)

const redisAddr = "127.0.0.1:6379"

func newClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: addr, ContextTimeoutEnabled: true, MaxRetries: 1, DialerRetries: 1, DialerRetryTimeout: 10 * time.Millisecond,
		DialTimeout: 500 * time.Millisecond, ReadTimeout: 250 * time.Millisecond, WriteTimeout: 250 * time.Millisecond,
	})
}

// newTestRedis returns a client on the local Redis and a scope unique to the
// test, so parallel tests never share an allowance. It fails, never skips,
// when Redis is down.
func newTestRedis(t *testing.T) (*redis.Client, string) {
	t.Helper()
	rdb := newClient(redisAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis is needed at %s and does not answer (start it with `make deps`): %v", redisAddr, err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	scope := "test-" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, "rate:"+scope+":*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
		_ = rdb.Close()
	})
	return rdb, scope
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })

// send sends a request from remote (empty: httptest's), authenticated as
// subject when it is not empty.
func send(h http.Handler, subject string, remote string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("GET", "/v1/things", nil)
	if remote != "" {
		req.RemoteAddr = remote
	}
	if subject != "" {
		req = req.WithContext(auth.WithPrincipal(req.Context(), auth.Principal{Subject: subject}))
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// perMinute keeps refills out of a test's few milliseconds: exactly burst
// requests pass.
func perMinute(burst int) redis_rate.Limit {
	return redis_rate.Limit{Rate: 1, Burst: burst, Period: time.Minute}
}

func TestLimiter_LimitsAndHeaders(t *testing.T) {
	t.Parallel()
	rdb, scope := newTestRedis(t)
	h := NewLimiter(rdb, scope, perMinute(3), discard()).Handler(okHandler)
	key := "cus_k1"

	for i := range 3 {
		rec := send(h, key, "")
		if rec.Code != http.StatusNoContent {
			t.Fatalf("request %d = %d; want 204", i+1, rec.Code)
		}
		hdr := rec.Header()
		if hdr.Get("RateLimit-Limit") != "3" || hdr.Get("RateLimit-Remaining") != strconv.Itoa(2-i) || hdr.Get("RateLimit-Reset") == "" {
			t.Errorf("request %d headers = %v; want limit 3, remaining %d, a reset", i+1, hdr, 2-i)
		}
		if hdr.Get("Retry-After") != "" {
			t.Errorf("request %d has Retry-After", i+1)
		}
	}
	rec := send(h, key, "")
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("4th request = %d; want 429", rec.Code)
	}
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("429 body %q: %v", rec.Body, err)
	}
	if body["code"] != "rate_limited" || body["status"] != float64(429) || rec.Header().Get("Content-Type") != "application/problem+json" {
		t.Errorf("429 body = %v, type %q", body, rec.Header().Get("Content-Type"))
	}
	// One request per minute refills: the next is allowed in ~20 s.
	retry, err := strconv.Atoi(rec.Header().Get("Retry-After"))
	if err != nil || retry < 1 || retry > 60 {
		t.Errorf("Retry-After = %q; want whole seconds in 1..60", rec.Header().Get("Retry-After"))
	}
	if rec.Header().Get("RateLimit-Remaining") != "0" || rec.Header().Get("RateLimit-Limit") != "3" {
		t.Errorf("429 headers = %v", rec.Header())
	}

	// Another client has its own allowance; an IP is a client too.
	if rec := send(h, "cus_k2", ""); rec.Code != http.StatusNoContent {
		t.Errorf("other key = %d; want 204", rec.Code)
	}
	for i := range 4 {
		want := http.StatusNoContent
		if i == 3 {
			want = http.StatusTooManyRequests
		}
		if rec := send(h, "", "10.1.2.3:5555"); rec.Code != want {
			t.Errorf("ip request %d = %d; want %d", i+1, rec.Code, want)
		}
	}
	// The port does not matter, and a bare IP is the same client.
	if rec := send(h, "", "10.1.2.3"); rec.Code != http.StatusTooManyRequests {
		t.Errorf("same IP without port = %d; want 429", rec.Code)
	}
}

func TestClientKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		remote string
		apiKey string
		want   string
	}{
		{name: "ipv4 with port", remote: "192.0.2.1:1234", want: "ip:192.0.2.1"},
		{name: "ipv6 with port", remote: "[2001:db8::1]:80", want: "ip:2001:db8::1"},
		{name: "bare ip", remote: "192.0.2.9", want: "ip:192.0.2.9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.remote
			if got := ClientKey(r); got != tt.want {
				t.Errorf("ClientKey = %q; want %q", got, tt.want)
			}
		})
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "192.0.2.7:999"
	r = r.WithContext(auth.WithPrincipal(r.Context(), auth.Principal{Subject: "cus_abc"}))
	if got := ClientKey(r); got != "sub:cus_abc" {
		t.Errorf("ClientKey(token of cus_abc) = %q; want sub:cus_abc", got)
	}
	// Headers a client chooses are no identity: a new X-API-Key or
	// X-Forwarded-For per request is still the same client.
	r = httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "192.0.2.7:999"
	r.Header.Set("X-API-Key", "random-1")
	r.Header.Set("X-Forwarded-For", "6.6.6.6")
	if got := ClientKey(r); got != "ip:192.0.2.7" {
		t.Errorf("ClientKey(X-API-Key, X-Forwarded-For) = %q; want ip:192.0.2.7", got)
	}
}

func TestLimiter_ZeroLimitDisables(t *testing.T) {
	t.Parallel()
	h := NewLimiter(nil, "x", PerSecond(0, 200), discard()).Handler(okHandler)
	for range 3 {
		if rec := send(h, "", ""); rec.Code != http.StatusNoContent || rec.Header().Get("RateLimit-Limit") != "" {
			t.Fatalf("disabled limiter = %d %v; want 204 without headers", rec.Code, rec.Header())
		}
	}
	if l := PerSecond(100, 20); l.Burst != 100 || l.Rate != 100 || l.Period != time.Second {
		t.Errorf("PerSecond(100, 20) = %v; want burst raised to 100", l)
	}
}

// TestLimiter_SharedAcrossReplicas sends concurrent requests of one client to
// two limiters (two replicas) on the same Redis: together they allow
// exactly the burst.
func TestLimiter_SharedAcrossReplicas(t *testing.T) {
	t.Parallel()
	rdb, scope := newTestRedis(t)
	other := newClient(redisAddr)
	t.Cleanup(func() { _ = other.Close() })
	replicas := []http.Handler{
		NewLimiter(rdb, scope, perMinute(10), discard()).Handler(okHandler),
		NewLimiter(other, scope, perMinute(10), discard()).Handler(okHandler),
	}
	var allowed, refused atomic.Int32
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Go(func() {
			switch send(replicas[i%2], "cus_shared", "").Code {
			case http.StatusNoContent:
				allowed.Add(1)
			case http.StatusTooManyRequests:
				refused.Add(1)
			}
		})
	}
	wg.Wait()
	if allowed.Load() != 10 || refused.Load() != 50 {
		t.Errorf("allowed %d, refused %d; want 10 and 50", allowed.Load(), refused.Load())
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// failOpenMetric reads orderflow.ratelimit.fail_open from reader.
func failOpenMetric(t *testing.T, reader *sdkmetric.ManualReader) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "orderflow.ratelimit.fail_open" {
				continue
			}
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok || !sum.IsMonotonic || len(sum.DataPoints) != 1 || sum.DataPoints[0].Attributes.Len() != 0 {
				t.Fatalf("orderflow.ratelimit.fail_open = %#v; want one unlabelled counter", m.Data)
			}
			return sum.DataPoints[0].Value
		}
	}
	t.Fatal("no orderflow.ratelimit.fail_open metric")
	return 0
}

// TestLimiter_FailOpen cuts Redis away: requests pass, each is counted
// (FailOpens and the metric), the outage and the recovery are logged once
// each, and limiting resumes.
func TestLimiter_FailOpen(t *testing.T) {
	t.Parallel()
	_, scope := newTestRedis(t)
	proxy, err := tcpproxy.Start(redisAddr)
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	t.Cleanup(proxy.Close)
	rdb := newClient(proxy.Addr())
	t.Cleanup(func() { _ = rdb.Close() })
	logs := &lockedBuffer{}
	limiter := NewLimiter(rdb, scope, perMinute(2), slog.New(slog.NewJSONHandler(logs, nil)))
	reader := sdkmetric.NewManualReader()
	if err := limiter.Instrument(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test")); err != nil {
		t.Fatal(err)
	}
	h := limiter.Handler(okHandler)
	key := "cus_fo"

	if rec := send(h, key, ""); rec.Code != http.StatusNoContent {
		t.Fatalf("before outage = %d", rec.Code)
	}
	proxy.Cut()
	for i := range 10 {
		rec := send(h, key, "")
		if rec.Code != http.StatusNoContent || rec.Header().Get("RateLimit-Limit") != "2" {
			t.Fatalf("request %d during outage = %d %v; want 204 with headers", i+1, rec.Code, rec.Header())
		}
	}
	if n := limiter.FailOpens(); n != 10 {
		t.Errorf("FailOpens = %d; want 10", n)
	}
	if n := failOpenMetric(t, reader); n != 10 {
		t.Errorf("orderflow.ratelimit.fail_open = %d; want 10", n)
	}
	if n := logs.count("redis unavailable"); n != 1 {
		t.Errorf("outage logged %d times; want once", n)
	}
	if err := proxy.Restore(); err != nil {
		t.Fatalf("restore: %v", err)
	}
	// Until the pool redials a request may still fail open; then the one
	// remaining unit is used and the next request is refused.
	deadline := time.Now().Add(10 * time.Second)
	for send(h, key, "").Code != http.StatusTooManyRequests {
		if time.Now().After(deadline) {
			t.Fatal("limiting did not resume after Redis came back")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := logs.count("redis available again"); n != 1 {
		t.Errorf("recovery logged %d times; want once", n)
	}
}
