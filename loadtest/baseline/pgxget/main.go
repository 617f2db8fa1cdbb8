// Command pgxget is the database ceiling of the read benchmark: a bare
// net/http handler that answers GET /v1/products/{sku} with one pgx
// primary-key SELECT on inventory's products table, encoded by
// encoding/json. Whatever an uncached inventory read costs beyond this is
// the price of the service's own code; a cached read should beat it.
package main

import (
	"context"
	"encoding/json"
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

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/loadtest/internal/serve"
)

func main() {
	if err := run(context.Background(), os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "pgxget:", err)
		os.Exit(1)
	}
}

type product struct {
	SKU        string `json:"sku"`
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
	Currency   string `json:"currency"`
	Available  int    `json:"available"`
}

func run(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	addr := getenv("BASELINE_ADDR")
	if addr == "" {
		addr = "127.0.0.1:8097"
	}
	dbURL := getenv("BASELINE_DATABASE_URL")
	if dbURL == "" {
		return errors.New("BASELINE_DATABASE_URL is required (a database with inventory's products table)")
	}
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return fmt.Errorf("BASELINE_DATABASE_URL: %w", err)
	}
	cfg.MaxConns = 20 // inventory's default pool size
	if n, err := strconv.Atoi(getenv("BASELINE_DB_MAX_CONNS")); err == nil && n > 0 {
		cfg.MaxConns = int32(n) // make bench: the services' pool size
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping: %w", err)
	}

	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sku, ok := strings.CutPrefix(r.URL.Path, "/v1/products/")
		if !ok || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		const q = `SELECT sku, name, price_cents, currency, available FROM products WHERE sku = $1`
		var p product
		err := pool.QueryRow(r.Context(), q, sku).Scan(&p.SKU, &p.Name, &p.PriceCents, &p.Currency, &p.Available)
		if errors.Is(err, pgx.ErrNoRows) {
			http.NotFound(w, r)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(p)
	})
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(stderr, "pgxget listening on %s\n", addr)
	return serve.Run(ctx, srv)
}
