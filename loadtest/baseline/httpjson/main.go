// Command httpjson is the floor of the benchmarks: a bare net/http handler
// that answers GET /v1/products/{sku} with a product encoded by
// encoding/json, and touches nothing else. No router, middleware, cache or
// database: it is what one loopback HTTP request costs on this machine with
// this load generator, so every other figure can be read against it.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/orderflow/orderflow/loadtest/internal/serve"
)

func main() {
	if err := run(context.Background(), os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "httpjson:", err)
		os.Exit(1)
	}
}

// product has the fields and JSON of inventory's product answer.
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
		addr = "127.0.0.1:8098"
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sku, ok := strings.CutPrefix(r.URL.Path, "/v1/products/")
		if !ok || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(product{SKU: sku, Name: "Product " + strings.TrimPrefix(sku, "SKU-"),
			PriceCents: 1999, Currency: "USD", Available: 1000000})
	})
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(stderr, "httpjson listening on %s\n", addr)
	return serve.Run(ctx, srv)
}
