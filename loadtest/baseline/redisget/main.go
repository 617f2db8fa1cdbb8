// Command redisget is the ceiling of the read benchmark: a bare net/http
// handler that answers GET /v1/products/{sku} with one go-redis GET and the
// stored JSON. No router, middleware, database or validation: whatever
// inventory's cached read costs beyond this is the price of the product's
// own code (routing, logging, ETag, fallbacks).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/orderflow/orderflow/loadtest/internal/serve"
)

func main() {
	if err := run(context.Background(), os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "redisget:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	addr := getenvDefault(getenv, "BASELINE_ADDR", "127.0.0.1:8099")
	redisURL := getenvDefault(getenv, "BASELINE_REDIS_URL", "redis://127.0.0.1:6379/0")
	prefix := getenvDefault(getenv, "BASELINE_PREFIX", "baseline:")
	n, err := strconv.Atoi(getenvDefault(getenv, "BASELINE_SEED_PRODUCTS", "10000"))
	if err != nil {
		return fmt.Errorf("BASELINE_SEED_PRODUCTS: %w", err)
	}
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		return fmt.Errorf("BASELINE_REDIS_URL: %w", err)
	}
	opts.ContextTimeoutEnabled = true
	rdb := redis.NewClient(opts)
	defer rdb.Close()

	// The same products inventory seeds, as inventory's JSON.
	pipe := rdb.Pipeline()
	for i := 1; i <= n; i++ {
		sku := fmt.Sprintf("SKU-%05d", i)
		body := fmt.Sprintf(`{"sku":%q,"name":"Product %05d","price_cents":%d,"currency":"USD","available":1000000}`,
			sku, i, 100+(i*7919)%99900)
		pipe.Set(ctx, prefix+sku, body, time.Hour)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("seed: %w", err)
	}

	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sku, ok := strings.CutPrefix(r.URL.Path, "/v1/products/")
		if !ok || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		body, err := rdb.Get(r.Context(), prefix+sku).Bytes()
		if errors.Is(err, redis.Nil) {
			http.NotFound(w, r)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(stderr, "redisget listening on %s with %d products\n", addr, n)
	return serve.Run(ctx, srv)
}

func getenvDefault(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}
