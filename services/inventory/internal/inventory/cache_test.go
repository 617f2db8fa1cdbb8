package inventory

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/orderflow/orderflow/pkg/tcpproxy"
)

// redisAddr is the local Redis every cache test uses.
const redisAddr = "127.0.0.1:6379"

// newTestRedis returns a client on the local Redis, and a key prefix of its
// own so parallel tests never see each other's keys (deleted at the end).
// It fails, never skips, when Redis is down.
func newTestRedis(t *testing.T) (*redis.Client, string) {
	t.Helper()
	rdb := newRedisClient(redisAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis is needed at %s and does not answer (start it with `make deps`): %v", redisAddr, err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := "test:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
		_ = rdb.Close()
	})
	return rdb, prefix
}

// newRedisClient mirrors the options main uses.
func newRedisClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: addr, ContextTimeoutEnabled: true, MaxRetries: 1, DialerRetries: 1, DialerRetryTimeout: 10 * time.Millisecond,
		DialTimeout: 500 * time.Millisecond, ReadTimeout: 250 * time.Millisecond, WriteTimeout: 250 * time.Millisecond,
	})
}

// logCounter is a logger whose lines can be counted.
type logCounter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logCounter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logCounter) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), substr)
}

type cachedEnv struct {
	pool  *pgxpool.Pool
	rdb   *redis.Client
	cache *Cache
	svc   *Service
	h     http.Handler
}

func newCachedEnv(t *testing.T, stock map[string]int) cachedEnv {
	t.Helper()
	pool := newTestPool(t)
	addProducts(t, pool, stock)
	rdb, prefix := newTestRedis(t)
	cache := NewCache(rdb, CacheConfig{Enabled: true, Prefix: prefix, TTL: 30 * time.Second}, discardLogger())
	svc := NewService(NewStore(pool), cache, testTTL)
	return cachedEnv{pool: pool, rdb: rdb, cache: cache, svc: svc, h: NewHandler(discardLogger(), svc, nil, testAuthn, nil)}
}

// getProduct reads a product through the handler and returns its available
// stock and X-Cache header.
func getProduct(t *testing.T, h http.Handler, sku string) (int, string) {
	t.Helper()
	code, body, hdr := do(t, h, call{method: "GET", path: "/v1/products/" + sku})
	if code != http.StatusOK {
		t.Fatalf("GET %s = %d %v; want 200", sku, code, body)
	}
	return int(body["available"].(float64)), hdr.Get("X-Cache")
}

func TestCache_HitAndMiss(t *testing.T) {
	t.Parallel()
	env := newCachedEnv(t, map[string]int{"A": 7})
	for i, want := range []string{"MISS", "HIT", "HIT"} {
		n, xc := getProduct(t, env.h, "A")
		if n != 7 || xc != want {
			t.Errorf("read #%d = %d, X-Cache %s; want 7, %s", i+1, n, xc, want)
		}
	}
	if st := env.cache.Stats(); st.Hits != 2 || st.Misses != 1 || st.Fallbacks != 0 {
		t.Errorf("Stats = %+v; want 2 hits, 1 miss, 0 fallbacks", st)
	}
	ttl := env.rdb.PTTL(context.Background(), env.cache.valueKey("A")).Val()
	if ttl < 26*time.Second || ttl > 33*time.Second {
		t.Errorf("PTTL = %v; want 30s ±10%%", ttl)
	}
	// Unknown products are not cached and stay 404.
	for range 2 {
		if code, _, _ := do(t, env.h, call{method: "GET", path: "/v1/products/NOPE"}); code != 404 {
			t.Errorf("GET NOPE = %d; want 404", code)
		}
	}
}

func TestCache_JitteredTTL(t *testing.T) {
	t.Parallel()
	c := NewCache(nil, CacheConfig{TTL: 30 * time.Second}, discardLogger())
	seen := map[time.Duration]bool{}
	for range 1000 {
		d := c.jitteredTTL()
		if d < 27*time.Second || d > 33*time.Second {
			t.Fatalf("jitteredTTL = %v; want within 27s..33s", d)
		}
		seen[d] = true
	}
	if len(seen) < 100 {
		t.Errorf("jitteredTTL gave %d distinct values in 1000; want spread", len(seen))
	}
}

// TestCache_WritesInvalidate checks the freshness decision: every write that
// changes available invalidates the product after its commit, so the next
// read (a MISS) shows the new stock; commit changes nothing and keeps the hit.
func TestCache_WritesInvalidate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := newCachedEnv(t, map[string]int{"A": 100, "B": 100})
	warm := func() {
		t.Helper()
		getProduct(t, env.h, "A")
		getProduct(t, env.h, "B")
		for _, sku := range []string{"A", "B"} {
			if _, xc := getProduct(t, env.h, sku); xc != "HIT" {
				t.Fatalf("warm %s: X-Cache %s; want HIT", sku, xc)
			}
		}
	}
	check := func(step string, want map[string]int, wantXCache string) {
		t.Helper()
		for sku, n := range want {
			got, xc := getProduct(t, env.h, sku)
			if got != n || xc != wantXCache {
				t.Errorf("after %s: %s = %d, X-Cache %s; want %d, %s", step, sku, got, xc, n, wantXCache)
			}
		}
	}

	warm()
	if code, _, _ := do(t, env.h, call{method: "PUT", path: "/v1/products/A/stock", body: `{"available":50}`, header: admin()}); code != 200 {
		t.Fatalf("PUT stock = %d", code)
	}
	check("stock PUT", map[string]int{"A": 50}, "MISS")

	warm()
	order := uuid.Must(uuid.NewV7()).String()
	if code, _, _ := do(t, env.h, call{method: "POST", path: "/v1/reservations",
		body: `{"order_id":"` + order + `","items":[{"sku":"A","quantity":5},{"sku":"B","quantity":3}]}`}); code != 201 {
		t.Fatalf("reserve = %d", code)
	}
	check("reserve", map[string]int{"A": 45, "B": 97}, "MISS")

	warm()
	if code, _, _ := do(t, env.h, call{method: "POST", path: "/v1/reservations/" + order + "/commit"}); code != 200 {
		t.Fatalf("commit = %d", code)
	}
	check("commit", map[string]int{"A": 45, "B": 97}, "HIT")

	if code, _, _ := do(t, env.h, call{method: "POST", path: "/v1/reservations/" + order + "/release"}); code != 200 {
		t.Fatalf("release = %d", code)
	}
	check("release", map[string]int{"A": 50, "B": 100}, "MISS")

	// Expiry by the sweeper.
	warm()
	expiring := uuid.Must(uuid.NewV7())
	if _, _, err := env.svc.Reserve(ctx, expiring, []Item{{SKU: "B", Quantity: 10}}); err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	check("reserve for expiry", map[string]int{"B": 90}, "MISS")
	warm()
	if _, err := env.pool.Exec(ctx, `UPDATE reservations SET expires_at = now() - interval '1 second' WHERE order_id = $1`, expiring); err != nil {
		t.Fatalf("backdate: %v", err)
	}
	if n, err := env.svc.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1, nil", n, err)
	}
	check("sweeper expiry", map[string]int{"B": 100}, "MISS")

	// A rejected reservation changes nothing and keeps the cache.
	warm()
	if code, _, _ := do(t, env.h, call{method: "POST", path: "/v1/reservations",
		body: `{"order_id":"` + uuid.Must(uuid.NewV7()).String() + `","items":[{"sku":"A","quantity":1000}]}`}); code != 409 {
		t.Fatalf("over-reserve = %d; want 409", code)
	}
	check("rejected reserve", map[string]int{"A": 50}, "HIT")
}

// TestCache_FillRacesWrite forces the race that plain delete-on-write loses:
// a reader loads the old row, the write commits and invalidates, then the
// reader tries to store what it loaded. The generation check must refuse it.
func TestCache_FillRacesWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := newCachedEnv(t, map[string]int{"A": 1})
	var once sync.Once
	env.cache.afterLoad = func(sku string) {
		once.Do(func() {
			if _, err := env.svc.SetStock(ctx, sku, 2); err != nil {
				t.Errorf("SetStock: %v", err)
			}
		})
	}
	p, cached, err := env.svc.Product(ctx, "A")
	if err != nil || cached || p.Available != 1 {
		t.Fatalf("racing read = %d, cached %v, %v; want the old 1 from Postgres", p.Available, cached, err)
	}
	if n, err := env.rdb.Exists(ctx, env.cache.valueKey("A")).Result(); err != nil || n != 0 {
		t.Fatalf("value key exists = %d, %v; want 0: a fill from before the write was stored", n, err)
	}
	for i, want := range []bool{false, true} {
		p, cached, err := env.svc.Product(ctx, "A")
		if err != nil || p.Available != 2 || cached != want {
			t.Errorf("read #%d after write = %d, cached %v, %v; want 2, %v", i+1, p.Available, cached, err, want)
		}
	}
}

// TestCache_NoStaleReadAfterWrite races readers against a writer through the
// real stack: once SetStock(n) has returned, no read that starts afterwards
// may see less than n (the writer only ever raises the stock).
func TestCache_NoStaleReadAfterWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := newCachedEnv(t, map[string]int{"HOT": 0})
	// A second replica sharing Redis: invalidation must reach its reads too.
	replica := NewService(NewStore(env.pool), NewCache(env.rdb, env.cache.cfg, discardLogger()), testTTL)

	const writes, readers = 150, 12
	var floor atomic.Int64 // the last value whose SetStock returned
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	for i := range readers {
		svc := env.svc
		if i%2 == 1 {
			svc = replica
		}
		wg.Go(func() {
			for !stop.Load() {
				min := floor.Load()
				p, _, err := svc.Product(ctx, "HOT")
				if err != nil {
					errs <- err
					return
				}
				if int64(p.Available) < min {
					errs <- fmt.Errorf("read %d after SetStock(%d) had returned", p.Available, min)
					return
				}
			}
		})
	}
	for n := 1; n <= writes; n++ {
		if _, err := env.svc.SetStock(ctx, "HOT", n); err != nil {
			t.Fatalf("SetStock(%d): %v", n, err)
		}
		floor.Store(int64(n))
		// A write invalidates the product, and back-to-back writes leave the
		// cache no time to be filled again: a pause after each lets readers
		// fill it and hit it, so the race goes through cached reads too.
		time.Sleep(2 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if p, _, err := replica.Product(ctx, "HOT"); err != nil || p.Available != writes {
		t.Errorf("final read = %d, %v; want %d", p.Available, err, writes)
	}
	if st := env.cache.Stats(); st.Hits == 0 {
		t.Errorf("Stats = %+v; want some hits (the test must exercise the cache)", st)
	}
}

// TestCache_Stampede sends many concurrent reads of one cold key to two
// caches that share Redis (two replicas): Postgres is read once.
func TestCache_Stampede(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, prefix := newTestRedis(t)
	cfg := CacheConfig{Enabled: true, Prefix: prefix, LockWait: 5 * time.Second}
	replicas := []*Cache{NewCache(rdb, cfg, discardLogger()), NewCache(rdb, cfg, discardLogger())}
	var loads atomic.Int32
	load := func(ctx context.Context) (Product, error) {
		loads.Add(1)
		time.Sleep(100 * time.Millisecond) // a slow query: the stampede window
		return Product{SKU: "COLD", Name: "Cold", PriceCents: 100, Currency: "USD", Available: 3}, nil
	}
	const perReplica = 40
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, c := range replicas {
		for range perReplica {
			wg.Go(func() {
				<-start
				p, _, err := c.Get(ctx, "COLD", load)
				if err != nil || p.Available != 3 {
					t.Errorf("Get = %+v, %v; want available 3", p, err)
				}
			})
		}
	}
	close(start)
	wg.Wait()
	if n := loads.Load(); n != 1 {
		t.Errorf("database loads = %d; want 1 for %d concurrent reads on 2 replicas", n, 2*perReplica)
	}
	if _, hit, err := replicas[1].Get(ctx, "COLD", load); err != nil || !hit {
		t.Errorf("later Get hit = %v, %v; want a hit", hit, err)
	}
}

// TestCache_LoadErrorNotShared checks a failed load is not cached and the
// lock is freed, so the next read tries again at once.
func TestCache_LoadErrorNotShared(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, prefix := newTestRedis(t)
	c := NewCache(rdb, CacheConfig{Enabled: true, Prefix: prefix}, discardLogger())
	boom := errors.New("boom")
	if _, _, err := c.Get(ctx, "X", func(context.Context) (Product, error) { return Product{}, boom }); !errors.Is(err, boom) {
		t.Fatalf("Get = %v; want boom", err)
	}
	if n := rdb.Exists(ctx, c.lockKey("X"), c.valueKey("X")).Val(); n != 0 {
		t.Errorf("keys left after failed load = %d; want 0", n)
	}
	p, _, err := c.Get(ctx, "X", func(context.Context) (Product, error) { return Product{SKU: "X", Available: 1}, nil })
	if err != nil || p.Available != 1 {
		t.Errorf("second Get = %+v, %v; want available 1", p, err)
	}
}

// TestCache_RedisDown cuts Redis away (a TCP proxy): reads and writes keep
// working on Postgres, fallbacks are counted, the outage is logged once, the
// invalidation owed during the outage is sent when Redis is back, and only
// then does the cache serve again.
func TestCache_RedisDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newTestPool(t)
	addProducts(t, pool, map[string]int{"A": 10})
	_, prefix := newTestRedis(t)
	proxy, err := tcpproxy.Start(redisAddr)
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	t.Cleanup(proxy.Close)
	rdb := newRedisClient(proxy.Addr())
	t.Cleanup(func() { _ = rdb.Close() })
	logs := &logCounter{}
	cache := NewCache(rdb, CacheConfig{Enabled: true, Prefix: prefix}, slog.New(slog.NewJSONHandler(logs, nil)))
	svc := NewService(NewStore(pool), cache, testTTL)
	h := NewHandler(discardLogger(), svc, nil, testAuthn, nil)

	getProduct(t, h, "A")
	if _, xc := getProduct(t, h, "A"); xc != "HIT" {
		t.Fatalf("X-Cache = %s before the outage; want HIT", xc)
	}

	proxy.Cut()
	for i := range 20 {
		n, xc := getProduct(t, h, "A")
		if n != 10 || xc != "MISS" {
			t.Fatalf("read #%d during outage = %d, %s; want 10 from Postgres (MISS)", i, n, xc)
		}
	}
	// The write commits although its invalidation cannot reach Redis.
	if code, _, _ := do(t, h, call{method: "PUT", path: "/v1/products/A/stock", body: `{"available":4}`, header: admin()}); code != 200 {
		t.Fatalf("PUT during outage = %d; want 200", code)
	}
	if n, _ := getProduct(t, h, "A"); n != 4 {
		t.Fatalf("read after PUT during outage = %d; want 4", n)
	}
	st := cache.Stats()
	if st.Fallbacks < 20 || st.InvalidationFailures != 1 {
		t.Errorf("Stats = %+v; want ≥20 fallbacks and 1 invalidation failure", st)
	}
	if n := logs.count("redis unavailable"); n != 1 {
		t.Errorf("outage logged %d times; want once", n)
	}

	if err := proxy.Restore(); err != nil {
		t.Fatalf("restore: %v", err)
	}
	// Redis still holds the old value (10) under the old generation; until
	// the owed invalidation lands this replica must not serve it.
	if n, _ := getProduct(t, h, "A"); n != 4 {
		t.Fatalf("read after restore, before retry = %d; want 4", n)
	}
	// Connections cut by the outage may fail once more before the pool
	// redials, so retry like the background loop does.
	for deadline := time.Now().Add(10 * time.Second); cache.isPending("A"); {
		if time.Now().After(deadline) {
			t.Fatal("the owed invalidation never reached Redis")
		}
		cache.retryPending(ctx)
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(downBackoff) // let the read backoff pass
	n, _ := getProduct(t, h, "A")
	n2, xc := getProduct(t, h, "A")
	if n != 4 || n2 != 4 || xc != "HIT" {
		t.Errorf("reads after recovery = %d, %d (%s); want 4, 4 (HIT)", n, n2, xc)
	}
	if n := logs.count("redis available again"); n != 1 {
		t.Errorf("recovery logged %d times; want once", n)
	}
}

func TestCache_Disabled(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newTestPool(t)
	addProducts(t, pool, map[string]int{"A": 3})
	rdb, prefix := newTestRedis(t)
	cache := NewCache(rdb, CacheConfig{Enabled: false, Prefix: prefix}, discardLogger())
	h := NewHandler(discardLogger(), NewService(NewStore(pool), cache, testTTL), nil, testAuthn, nil)
	for range 3 {
		if n, xc := getProduct(t, h, "A"); n != 3 || xc != "MISS" {
			t.Errorf("read = %d, %s; want 3, MISS", n, xc)
		}
	}
	if n := rdb.Exists(ctx, cache.valueKey("A")).Val(); n != 0 {
		t.Errorf("disabled cache stored a value")
	}
	// Writes still invalidate, for replicas that have the cache on.
	if code, _, _ := do(t, h, call{method: "PUT", path: "/v1/products/A/stock", body: `{"available":1}`, header: admin()}); code != 200 {
		t.Fatalf("PUT = %d", code)
	}
	if n := rdb.Exists(ctx, cache.genKey("A")).Val(); n != 1 {
		t.Errorf("disabled cache did not bump the generation on write")
	}
}

// TestHandler_XCacheOnRealStack checks the header through httptest's real
// server too (the recorder cannot show header/body ordering issues).
func TestHandler_XCacheOnRealStack(t *testing.T) {
	t.Parallel()
	env := newCachedEnv(t, map[string]int{"A": 1})
	srv := httptest.NewServer(env.h)
	t.Cleanup(srv.Close)
	for _, want := range []string{"MISS", "HIT"} {
		resp, err := http.Get(srv.URL + "/v1/products/A")
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("X-Cache"); got != want {
			t.Errorf("X-Cache = %q; want %q", got, want)
		}
	}
}

// FuzzProductCodec checks the cached form: any product Postgres can hold
// comes back unchanged, and no stored string, however malformed, panics or
// decodes to a product without a sku.
func FuzzProductCodec(f *testing.F) {
	f.Add("SKU-00001", "Product 00001", int64(8019), "USD", 1000000, "")
	f.Add("A", "", int64(0), "", 0, `{"s":"A","n":"x","p":1,"c":"USD","a":2}`)
	f.Add("ü|x", "name\twith\x01controls", int64(-1), "EUR", -5, "p1\x00A\x00n\x001\x00USD")
	f.Fuzz(func(t *testing.T, sku, name string, price int64, currency string, available int, stored string) {
		if got, ok := decodeProduct(stored); ok && got.SKU == "" {
			t.Fatalf("decodeProduct(%q) = %+v, true; want no product without a sku", stored, got)
		}
		p := Product{SKU: sku, Name: name, PriceCents: price, Currency: currency, Available: available}
		if !validSKU(sku) || strings.ContainsRune(name, 0) || strings.ContainsRune(currency, 0) {
			return // Postgres cannot hold it
		}
		got, ok := decodeProduct(encodeProduct(p))
		if !ok || got != p {
			t.Fatalf("decodeProduct(encodeProduct(%+v)) = %+v, %v; want it back", p, got, ok)
		}
	})
}
