package inventory

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/sync/singleflight"

	"github.com/orderflow/orderflow/pkg/periodic"
)

// CacheConfig tunes a Cache. Zero durations take the defaults in NewCache.
type CacheConfig struct {
	// Enabled switches cache reads on. Writes invalidate either way, so a
	// fleet where some replicas run with the cache off stays correct.
	Enabled bool
	// Prefix starts every key, so tests (and several deployments sharing
	// one Redis) never collide.
	Prefix string
	// TTL is the mean lifetime of a cached product; each entry gets ±10%
	// jitter so keys filled together do not all expire together.
	TTL time.Duration
	// LockTTL bounds how long one replica may hold the fill lock of a key.
	LockTTL time.Duration
	// LockWait is how long a replica that lost the fill lock waits for the
	// winner's value before it reads Postgres itself.
	LockWait time.Duration
	// LoadTimeout bounds one shared fill (the database read behind it).
	LoadTimeout time.Duration
}

// CacheStats are the cache's counters since start-up.
type CacheStats struct {
	Hits   uint64 // reads answered from Redis
	Misses uint64 // reads answered from Postgres while Redis was up
	// Fallbacks counts reads that went to Postgres because Redis failed or
	// was skipped after failing (fail open).
	Fallbacks uint64
	// InvalidationFailures counts writes whose invalidation did not reach
	// Redis at first try; they are retried until they do.
	InvalidationFailures uint64
}

// genTTL is how long a key's generation outlives its last write. It only
// has to outlast one fill (LoadTimeout + LockWait), and a random generation
// can never be confused with an older one, even after it expires.
const genTTL = time.Hour

// downBackoff is how long reads skip Redis after it failed, so an outage
// costs one timeout per interval instead of one per request.
const downBackoff = time.Second

// Cache is cache-aside for product reads in Redis.
//
// Freshness rests on a per-key generation: every write, after its database
// commit, replaces the generation with a random token and deletes the value
// (one MULTI). A fill reads the generation before it reads Postgres and
// stores its value only if the generation is still the same (a Lua script),
// so a fill that read the old row can never store it after a write has
// invalidated the key. Once a write's call returns, no read serves the value
// it replaced.
//
// A cold key is loaded once per process (singleflight, keyed by the
// generation so requests that start after a write never join a fill from
// before it) and once across replicas (SET NX PX lock; the losers wait
// briefly for the winner's value, then read Postgres).
type Cache struct {
	rdb   *redis.Client
	cfg   CacheConfig
	log   *slog.Logger
	group singleflight.Group

	hits, misses, fallbacks, invalFailures atomic.Uint64

	down      atomic.Bool  // last Redis call failed; flips are logged
	skipUntil atomic.Int64 // unix nanos; reads skip Redis until then

	mu      sync.Mutex
	pending map[string]bool // skus whose invalidation is still owed

	// afterLoad, when set by a test, runs between the database read of a
	// fill and the store of its value: the window where a write can race.
	afterLoad func(sku string)
}

// NewCache returns a Cache over rdb.
func NewCache(rdb *redis.Client, cfg CacheConfig, log *slog.Logger) *Cache {
	if cfg.TTL <= 0 {
		cfg.TTL = 30 * time.Second
	}
	if cfg.LockTTL <= 0 {
		cfg.LockTTL = 2 * time.Second
	}
	if cfg.LockWait <= 0 {
		cfg.LockWait = 100 * time.Millisecond
	}
	if cfg.LoadTimeout <= 0 {
		cfg.LoadTimeout = 5 * time.Second
	}
	return &Cache{rdb: rdb, cfg: cfg, log: log, pending: map[string]bool{}}
}

// Stats returns the counters (exported by Instrument, logged at stop).
func (c *Cache) Stats() CacheStats {
	return CacheStats{
		Hits:                 c.hits.Load(),
		Misses:               c.misses.Load(),
		Fallbacks:            c.fallbacks.Load(),
		InvalidationFailures: c.invalFailures.Load(),
	}
}

// Instrument exports the product reads on m by cache result,
// orderflow_cache_requests_total{result="hit"|"miss"|"fallback"}, read
// when scraped: the cache hit ratio of the dashboard and of the
// CacheHitRatioCollapse alert.
func (c *Cache) Instrument(m metric.Meter) error {
	results := []struct {
		attrs metric.ObserveOption
		n     *atomic.Uint64
	}{
		{metric.WithAttributeSet(attribute.NewSet(attribute.String("result", "hit"))), &c.hits},
		{metric.WithAttributeSet(attribute.NewSet(attribute.String("result", "miss"))), &c.misses},
		{metric.WithAttributeSet(attribute.NewSet(attribute.String("result", "fallback"))), &c.fallbacks},
	}
	_, err := m.Int64ObservableCounter("orderflow.cache.requests",
		metric.WithDescription("Product reads by cache result: hit (Redis), miss (Postgres, then cached), fallback (Postgres because Redis failed)."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			for _, r := range results {
				o.Observe(int64(r.n.Load()), r.attrs)
			}
			return nil
		}))
	if err != nil {
		return fmt.Errorf("cache metric: %w", err)
	}
	return nil
}

// The three keys of one product share a hash tag, so the scripts and
// transactions below stay valid on Redis Cluster.
func (c *Cache) valueKey(sku string) string { return c.cfg.Prefix + "product:{" + sku + "}" }
func (c *Cache) genKey(sku string) string   { return c.cfg.Prefix + "product:{" + sku + "}:gen" }
func (c *Cache) lockKey(sku string) string  { return c.cfg.Prefix + "product:{" + sku + "}:lock" }

// A cached product is its fields joined by NUL bytes behind a version tag:
// "p1\x00sku\x00name\x00price\x00currency\x00available". Postgres text
// cannot hold NUL, so no field contains the separator. Decoding it is a
// few string cuts, cheaper than encoding/json on the hottest read.
// Anything else under the key (an older format, a foreign value) does not
// decode and is read as a miss, then overwritten by the fill.
const cacheFormat = "p1"

func encodeProduct(p Product) string {
	return strings.Join([]string{cacheFormat, p.SKU, p.Name, strconv.FormatInt(p.PriceCents, 10),
		p.Currency, strconv.Itoa(p.Available)}, "\x00")
}

func decodeProduct(s string) (Product, bool) {
	f := strings.Split(s, "\x00")
	if len(f) != 6 || f[0] != cacheFormat || f[1] == "" {
		return Product{}, false
	}
	price, err := strconv.ParseInt(f[3], 10, 64)
	if err != nil {
		return Product{}, false
	}
	available, err := strconv.Atoi(f[5])
	if err != nil {
		return Product{}, false
	}
	return Product{SKU: f[1], Name: f[2], PriceCents: price, Currency: f[4], Available: available}, true
}

// fill is the result of one shared load.
type fill struct {
	p   Product
	hit bool // the value came from Redis after all (another replica filled it)
}

// Get returns the product from Redis, or loads it with load and caches it.
// hit reports whether Redis answered. A Redis failure is not an error: the
// read goes to load (fail open), counted and logged once per outage.
func (c *Cache) Get(ctx context.Context, sku string, load func(context.Context) (Product, error)) (p Product, hit bool, err error) {
	if !c.cfg.Enabled {
		p, err = load(ctx)
		return p, false, err
	}
	if c.skipping() || c.isPending(sku) {
		c.fallbacks.Add(1)
		p, err = load(ctx)
		return p, false, err
	}
	vals, err := c.rdb.MGet(ctx, c.valueKey(sku), c.genKey(sku)).Result()
	if err != nil {
		if ctx.Err() != nil {
			return Product{}, false, ctx.Err()
		}
		c.failed(ctx, err)
		c.fallbacks.Add(1)
		p, err = load(ctx)
		return p, false, err
	}
	c.recovered(ctx)
	if s, ok := vals[0].(string); ok {
		if p, ok := decodeProduct(s); ok {
			c.hits.Add(1)
			return p, true, nil
		}
	}
	gen, _ := vals[1].(string)

	// Only requests that saw the same generation share a fill: one that
	// starts after a write sees the new generation and loads afresh.
	ch := c.group.DoChan(sku+"\x00"+gen, func() (any, error) {
		// The fill outlives the request that started it: others wait on it.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.LoadTimeout)
		defer cancel()
		return c.fill(fctx, sku, gen, load)
	})
	select {
	case <-ctx.Done():
		return Product{}, false, ctx.Err()
	case res := <-ch:
		if res.Err != nil {
			return Product{}, false, res.Err
		}
		f := res.Val.(fill)
		if f.hit {
			c.hits.Add(1)
		} else {
			c.misses.Add(1)
		}
		return f.p, f.hit, nil
	}
}

// storeIfGen stores a filled value only if the key's generation is still the
// one read before the database read, and frees the fill lock if this fill
// still holds it.
var storeIfGen = redis.NewScript(`
local gen = redis.call('GET', KEYS[2]) or ''
local stored = 0
if gen == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  stored = 1
end
if ARGV[4] ~= '' and redis.call('GET', KEYS[3]) == ARGV[4] then
  redis.call('DEL', KEYS[3])
end
return stored
`)

// fill loads a cold key. Across replicas only the holder of the fill lock
// reads Postgres; the others poll Redis for up to LockWait and read Postgres
// themselves only when the value still is not there.
func (c *Cache) fill(ctx context.Context, sku, gen string, load func(context.Context) (Product, error)) (fill, error) {
	token := newToken()
	won, err := c.rdb.SetNX(ctx, c.lockKey(sku), token, c.cfg.LockTTL).Result()
	if err != nil {
		c.failed(ctx, err)
		p, err := load(ctx)
		return fill{p: p}, err
	}
	if !won {
		token = ""
		deadline := time.Now().Add(c.cfg.LockWait)
		for time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
			vals, err := c.rdb.MGet(ctx, c.valueKey(sku), c.genKey(sku)).Result()
			if err != nil {
				c.failed(ctx, err)
				break
			}
			if s, ok := vals[0].(string); ok {
				if p, ok := decodeProduct(s); ok {
					return fill{p: p, hit: true}, nil
				}
			}
		}
	}
	p, err := load(ctx)
	if err != nil {
		if token != "" {
			c.unlock(ctx, sku, token)
		}
		return fill{}, err
	}
	if c.afterLoad != nil {
		c.afterLoad(sku)
	}
	keys := []string{c.valueKey(sku), c.genKey(sku), c.lockKey(sku)}
	if err := storeIfGen.Run(ctx, c.rdb, keys, gen, encodeProduct(p), c.jitteredTTL().Milliseconds(), token).Err(); err != nil {
		c.failed(ctx, err)
	}
	return fill{p: p}, nil
}

var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

func (c *Cache) unlock(ctx context.Context, sku, token string) {
	if err := unlockScript.Run(ctx, c.rdb, []string{c.lockKey(sku)}, token).Err(); err != nil {
		c.failed(ctx, err)
	}
}

// jitteredTTL spreads expiries ±10% around TTL.
func (c *Cache) jitteredTTL() time.Duration {
	spread := int64(c.cfg.TTL / 5)
	if spread <= 0 {
		return c.cfg.TTL
	}
	return c.cfg.TTL - c.cfg.TTL/10 + time.Duration(rand.Int64N(spread+1))
}

// Invalidate makes the next read of every sku go to Postgres; call it after
// the write's transaction committed. Each sku gets a new generation (which
// fails any fill in flight) and loses its value, in one transaction. When
// Redis does not answer, the skus are remembered: this replica reads them
// from Postgres, and Retry keeps trying until Redis confirms.
func (c *Cache) Invalidate(ctx context.Context, skus ...string) {
	if len(skus) == 0 {
		return
	}
	// The write is committed: finish invalidating even if the client left.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := c.invalidate(ctx, skus); err != nil {
		c.invalFailures.Add(1)
		c.failed(ctx, err)
		c.mu.Lock()
		for _, s := range skus {
			c.pending[s] = true
		}
		c.mu.Unlock()
	}
}

func (c *Cache) invalidate(ctx context.Context, skus []string) error {
	_, err := c.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, s := range skus {
			p.Set(ctx, c.genKey(s), newToken(), genTTL)
			p.Del(ctx, c.valueKey(s))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("invalidate %d products: %w", len(skus), err)
	}
	return nil
}

// Retry re-sends owed invalidations every interval until ctx is done.
func (c *Cache) Retry(ctx context.Context, interval time.Duration) {
	periodic.Run(ctx, interval, c.retryPending)
}

func (c *Cache) retryPending(ctx context.Context) {
	c.mu.Lock()
	skus := make([]string, 0, len(c.pending))
	for s := range c.pending {
		skus = append(skus, s)
	}
	c.mu.Unlock()
	if len(skus) == 0 {
		return
	}
	if err := c.invalidate(ctx, skus); err != nil {
		c.failed(ctx, err)
		return
	}
	c.recovered(ctx)
	c.mu.Lock()
	for _, s := range skus {
		delete(c.pending, s)
	}
	c.mu.Unlock()
}

func (c *Cache) isPending(sku string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pending[sku]
}

func (c *Cache) skipping() bool {
	return c.down.Load() && time.Now().UnixNano() < c.skipUntil.Load()
}

// failed records a Redis failure; only the first of an outage is logged.
func (c *Cache) failed(ctx context.Context, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	c.skipUntil.Store(time.Now().Add(downBackoff).UnixNano())
	if c.down.CompareAndSwap(false, true) {
		c.log.WarnContext(ctx, "redis unavailable: product reads go to postgres", "error", err.Error())
	}
}

// recovered records a Redis success; the end of an outage is logged once.
func (c *Cache) recovered(ctx context.Context) {
	if c.down.CompareAndSwap(true, false) {
		c.log.InfoContext(ctx, "redis available again: product reads use the cache")
	}
}

func newToken() string {
	var b [12]byte
	_, _ = crand.Read(b[:]) // never fails (crypto/rand docs)
	return hex.EncodeToString(b[:])
}
