// Command overhead measures what telemetry costs: it starts two complete
// Orderflow stacks side by side from the same binaries — one tracing 100% of
// requests and exporting every span over OTLP/HTTP, one with
// OTEL_SDK_DISABLED=true — and places orders against them in alternating
// rounds, so both see the same machine, the same Postgres and the same
// noise. It prints orders/s and latency per mode and the throughput lost to
// tracing. Metrics (/metrics) stay on in both: they are not optional.
//
//	go run ./loadtest/overhead -duration 20s -rounds 3 -concurrency 16
//
// Both stacks trust one Ory Hydra started for the run (pkg/authtest; the
// binary from scripts/hydra.sh build, or HYDRA_BIN): each client is a
// customer placing orders with its own access token.
//
// It needs the local PostgreSQL, Redis and SQS endpoint (make deps). With
// -otlp it exports to that endpoint (Jaeger: http://127.0.0.1:4318) instead
// of its own receiver; with -targets it writes a Prometheus file_sd file
// naming the traced stack's processes, so a Prometheus can scrape the run.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/pkg/authtest"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/smtptest"
	"github.com/orderflow/orderflow/pkg/telemetry/otlptest"
	"github.com/orderflow/orderflow/test/stack"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "overhead:", err)
		os.Exit(1)
	}
}

type mode struct {
	name string
	env  []string
	s    *stack.Stack
	res  result
}

type result struct {
	ok, failed int64
	elapsed    time.Duration
	latencies  []time.Duration
	statuses   map[int]int64 // failed answers by status; 0: no answer
}

func run() error {
	duration := flag.Duration("duration", 20*time.Second, "length of one round")
	rounds := flag.Int("rounds", 3, "rounds per mode, alternating")
	concurrency := flag.Int("concurrency", 16, "clients placing orders at once")
	pgURL := flag.String("postgres", "postgres://postgres@127.0.0.1:5432", "PostgreSQL server (databases are created and dropped)")
	sqsEndpoint := flag.String("sqs", "http://127.0.0.1:4566", "SQS endpoint")
	otlp := flag.String("otlp", "", "OTLP/HTTP endpoint of the traced stack (default: an in-process receiver)")
	targets := flag.String("targets", "", "write a Prometheus file_sd JSON file for the traced stack here")
	logs := flag.String("logs", "", "keep the services' logs in this directory (default: a temporary one)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	dir, err := os.MkdirTemp("", "orderflow-overhead")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Println("building the services…")
	if err := stack.Build(dir); err != nil {
		return err
	}
	endpoint := *otlp
	var recv *otlptest.Receiver
	if endpoint == "" {
		if recv, err = otlptest.Start(false); err != nil {
			return err
		}
		defer recv.Close()
		endpoint = recv.Endpoint()
	}
	smtp, err := smtptest.NewSink()
	if err != nil {
		return err
	}
	defer smtp.Close()
	// The clients sign in once; many long rounds can outlast Hydra's
	// default 15 min tokens, so these live 2 h. Hydra's scratch database
	// goes on the -postgres server too.
	if os.Getenv("TEST_DATABASE_URL") == "" {
		os.Setenv("TEST_DATABASE_URL", strings.TrimSuffix(*pgURL, "/")+"/postgres?sslmode=disable")
	}
	hydra, err := authtest.StartProcess(ctx, authtest.Options{AccessTokenTTL: 2 * time.Hour})
	if err != nil {
		return err
	}
	defer hydra.Close()
	var customers []string
	for w := range *concurrency {
		customers = append(customers, customerID(w))
	}
	tokens, err := stack.CustomerTokens(ctx, hydra, customers)
	if err != nil {
		return err
	}

	modes := []*mode{
		{name: "tracing 100%", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + endpoint, "OTEL_TRACES_SAMPLER_ARG=1"}},
		{name: "tracing off", env: []string{"OTEL_SDK_DISABLED=true"}},
	}
	var dbs []string
	defer func() { dropDatabases(*pgURL, dbs) }()
	for _, m := range modes {
		urls := map[string]string{}
		for _, svc := range []string{"order", "inventory", "payment", "notification"} {
			name := "overhead_" + svc + "_" + randomHex()
			u := fmt.Sprintf("%s/%s?sslmode=disable", strings.TrimSuffix(*pgURL, "/"), name)
			if err := postgres.CreateDatabase(ctx, u); err != nil {
				return err
			}
			dbs = append(dbs, name)
			urls[svc] = u
		}
		logDir := filepath.Join(dir, "logs-"+strings.Fields(m.name)[1])
		if *logs != "" {
			logDir = filepath.Join(*logs, strings.Fields(m.name)[1])
		}
		if err := os.MkdirAll(logDir, 0o755); err != nil {
			return err
		}
		m.s, err = stack.Start(stack.Config{
			BinDir: dir, LogDir: logDir, Databases: urls, SQSEndpoint: *sqsEndpoint, SMTPAddr: smtp.Addr(), Hydra: hydra,
			Env: append([]string{"LOG_LEVEL=warn"}, m.env...),
			ServiceEnv: map[string][]string{
				"inventory": {"INVENTORY_RATE_LIMIT=0", "INVENTORY_SEED_PRODUCTS=1000"},
				"order":     {"ORDER_RATE_LIMIT=0"},
			},
		})
		if err != nil {
			return fmt.Errorf("start %s stack: %w", m.name, err)
		}
		defer m.s.Close()
	}
	if *targets != "" {
		if err := writeTargets(*targets, modes[0].s); err != nil {
			return err
		}
	}

	fmt.Printf("warming up both stacks (%d clients, 5 s each)…\n", *concurrency)
	for _, m := range modes {
		load(ctx, m.s, tokens, *concurrency, 5*time.Second)
	}
	for r := range *rounds {
		for _, m := range modes {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			res := load(ctx, m.s, tokens, *concurrency, *duration)
			fmt.Printf("round %d  %-13s %7.1f orders/s  (%d ok, %d failed %v)\n", r+1, m.name,
				float64(res.ok)/res.elapsed.Seconds(), res.ok, res.failed, res.statuses)
			m.res.ok += res.ok
			m.res.failed += res.failed
			m.res.elapsed += res.elapsed
			m.res.latencies = append(m.res.latencies, res.latencies...)
		}
	}

	fmt.Printf("\n%-13s %10s %9s %9s %9s %8s\n", "mode", "orders/s", "p50", "p95", "p99", "failed")
	var tput [2]float64
	for i, m := range modes {
		tput[i] = float64(m.res.ok) / m.res.elapsed.Seconds()
		slices.Sort(m.res.latencies)
		fmt.Printf("%-13s %10.1f %9s %9s %9s %8d\n", m.name, tput[i],
			pct(m.res.latencies, 0.50), pct(m.res.latencies, 0.95), pct(m.res.latencies, 0.99), m.res.failed)
	}
	fmt.Printf("\nthroughput with tracing at 100%%: %+.1f%% vs tracing off (%d clients, %d × %s per mode)\n",
		(tput[0]-tput[1])/tput[1]*100, *concurrency, *rounds, *duration)
	if recv != nil {
		reqs, n := recv.Received()
		fmt.Printf("the traced stack exported %d OTLP requests, %.1f MB of spans\n", reqs, float64(n)/1e6)
	}
	return nil
}

func customerID(client int) string { return fmt.Sprintf("cus_%d", client) }

// load places orders from n clients for d and returns what happened. Each
// client is a customer with its token in tokens; the token says who, so
// the body names no customer.
func load(ctx context.Context, s *stack.Stack, tokens map[string]string, n int, d time.Duration) result {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}, Timeout: 30 * time.Second}
	var ok, failed atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	statuses := map[int]int64{}
	fail := func(status int) {
		failed.Add(1)
		mu.Lock()
		statuses[status]++
		mu.Unlock()
	}
	var wg sync.WaitGroup
	start := time.Now()
	for w := range n {
		wg.Go(func() {
			var mine []time.Duration
			auth := "Bearer " + tokens[customerID(w)]
			for i := 0; ctx.Err() == nil; i++ {
				body, _ := json.Marshal(map[string]any{
					"email":          "load@example.com",
					"items":          []map[string]any{{"sku": fmt.Sprintf("SKU-%05d", 1+(w*131+i*17)%1000), "quantity": 1}},
					"payment_method": "pm_card_ok",
				})
				req, _ := http.NewRequest(http.MethodPost, s.URL("order", "/v1/orders"), bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", auth)
				req.Header.Set("Idempotency-Key", "overhead-"+randomHex())
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						fail(0)
					}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusCreated {
					ok.Add(1)
					mine = append(mine, time.Since(t0))
				} else {
					fail(resp.StatusCode)
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return result{ok: ok.Load(), failed: failed.Load(), elapsed: time.Since(start), latencies: lat, statuses: statuses}
}

func pct(sorted []time.Duration, p float64) string {
	if len(sorted) == 0 {
		return "-"
	}
	return sorted[int(p*float64(len(sorted)-1))].Round(100 * time.Microsecond).String()
}

// writeTargets writes a Prometheus file_sd file with one target per process,
// labelled job=<service> like the static configurations.
func writeTargets(path string, s *stack.Stack) error {
	type group struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	var groups []group
	for _, name := range stack.Services {
		groups = append(groups, group{Targets: []string{fmt.Sprintf("127.0.0.1:%d", s.Ports[name])},
			Labels: map[string]string{"job": name}})
	}
	b, err := json.MarshalIndent(groups, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func dropDatabases(server string, names []string) {
	if len(names) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u, err := url.Parse(server)
	if err != nil {
		return
	}
	u.Path = "/postgres"
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		fmt.Fprintln(os.Stderr, "drop databases:", err)
		return
	}
	defer conn.Close(ctx)
	for _, n := range names {
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{n}.Sanitize()+" WITH (FORCE)"); err != nil {
			fmt.Fprintln(os.Stderr, "drop database", n+":", err)
		}
	}
}

func randomHex() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
