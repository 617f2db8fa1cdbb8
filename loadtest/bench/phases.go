package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// lazily started stacks, shared by the phases.
func (e *environment) patternsOnStack(ctx context.Context) (running, error) {
	if e.on == nil {
		r, err := e.stack(ctx, "on", patternsOn, "")
		if err != nil {
			return running{}, err
		}
		e.on = &r
	}
	return *e.on, nil
}

func (e *environment) patternsOffStack(ctx context.Context) (running, error) {
	if e.off == nil {
		r, err := e.stack(ctx, "off", patternsOff, "")
		if err != nil {
			return running{}, err
		}
		if r, err = e.withSyncNotify(ctx, r); err != nil {
			return running{}, err
		}
		e.off = &r
	}
	return *e.off, nil
}

const k6Dir = "loadtest/k6"

// benchReads measures the product read path against the HTTP baselines with
// loadtest/readbench, all targets interleaved in slices.
func benchReads(ctx context.Context, e *environment, r *report) error {
	off, err := e.patternsOffStack(ctx) // its inventory: no cache, no rate limit
	if err != nil {
		return err
	}
	cached, err := e.stack(ctx, "read", readCached, "inventory")
	if err != nil {
		return err
	}
	bare, err := e.baseline(ctx, "httpjson")
	if err != nil {
		return err
	}
	prefix := "bench-" + randomHex() + ":"
	redisURL := "redis://127.0.0.1:6379/0"
	ceiling, err := e.baseline(ctx, "redisget", "BASELINE_PREFIX="+prefix, "BASELINE_REDIS_URL="+redisURL)
	if err != nil {
		return err
	}
	e.closers = append(e.closers, func() { deleteKeys(redisURL, prefix) })
	defer e.stop(cached)
	pgx, err := e.baseline(ctx, "pgxget", "BASELINE_DATABASE_URL="+off.inventoryDB, "BASELINE_DB_MAX_CONNS="+e.dbConns())
	if err != nil {
		return err
	}
	conc := 2 * e.o.vus
	say("readbench: %d workers, %s per target, interleaved", conc, e.o.readDur)
	rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	logPath := filepath.Join(e.logDir, "readbench.log")
	err = e.command(rctx, logPath, filepath.Join(e.dir, "readbench"), "-c", fmt.Sprint(conc),
		"-d", e.o.readDur.String(), "-slice", "2s", "-skus", "1000",
		"-t", "bare="+bare, "-t", "redisget="+ceiling, "-t", "pgxget="+pgx,
		"-t", "cached="+cached.inventory, "-t", "revalidate=304+"+cached.inventory,
		"-t", "uncached="+off.inventory)
	out, _ := os.ReadFile(logPath)
	fmt.Print(indent(string(out)))
	if err != nil {
		return fmt.Errorf("readbench: %w (log %s)", err, logPath)
	}
	labels := map[string][2]string{
		"bare":       {"baseline: bare net/http JSON", "baseline"},
		"redisget":   {"baseline: net/http + one go-redis GET", "baseline"},
		"pgxget":     {"baseline: net/http + one pgx PK SELECT", "baseline"},
		"cached":     {"product GET, cached (Redis)", "inventory"},
		"revalidate": {"product GET, 304 revalidation", "inventory"},
		"uncached":   {"product GET, uncached (Postgres)", "inventory"},
	}
	addReadResults(r, string(out), labels, fmt.Sprintf("readbench, %d workers", conc))

	// Latency is compared at the same load: an open model (requests on a
	// fixed schedule) at 80% of the uncached peak, for both.
	uncached, ok := r.get("read_uncached")
	if !ok || uncached.RPS <= 0 {
		return fmt.Errorf("readbench measured no uncached rate (log %s)", logPath)
	}
	rate := math.Floor(0.8 * uncached.RPS)
	say("readbench: both at %.0f req/s (80%% of the uncached peak), open model", rate)
	logPath = filepath.Join(e.logDir, "readbench-same-load.log")
	err = e.command(rctx, logPath, filepath.Join(e.dir, "readbench"), "-c", fmt.Sprint(2*conc),
		"-rate", fmt.Sprint(rate), "-d", e.o.readDur.String(), "-slice", "2s", "-skus", "1000",
		"-t", "same_cached="+cached.inventory, "-t", "same_uncached="+off.inventory)
	out, _ = os.ReadFile(logPath)
	fmt.Print(indent(string(out)))
	if err != nil {
		return fmt.Errorf("readbench: %w (log %s)", err, logPath)
	}
	addReadResults(r, string(out), map[string][2]string{
		"same_cached":   {fmt.Sprintf("product GET, cached, at %.0f req/s", rate), "inventory"},
		"same_uncached": {fmt.Sprintf("product GET, uncached, at %.0f req/s", rate), "inventory"},
	}, fmt.Sprintf("readbench open model, %.0f req/s", rate))
	return nil
}

// addReadResults adds readbench's RESULT lines to the report as read_<name>.
func addReadResults(r *report, out string, labels map[string][2]string, tool string) {
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "RESULT ") {
			continue
		}
		kv := map[string]string{}
		for _, f := range strings.Fields(line)[1:] {
			k, v, _ := strings.Cut(f, "=")
			kv[k] = v
		}
		n := kv["name"]
		num := func(k string) float64 { v, _ := strconv.ParseFloat(kv[k], 64); return v }
		req := num("requests")
		m := measurement{Key: "read_" + n, Name: labels[n][0], Group: labels[n][1], RPS: num("rps"),
			P50: num("p50_ms"), P95: num("p95_ms"), P99: num("p99_ms"), Requests: int64(req), Tool: tool}
		if req > 0 {
			m.ErrorRate = num("errors") / (req + num("errors"))
		}
		if (n == "cached" || n == "same_cached") && req > 0 {
			m.Note = fmt.Sprintf("cache hit ratio %.1f%%", 100*num("hits")/req)
		}
		if late := num("late"); late > 0 && req > 0 {
			m.Note = strings.TrimPrefix(m.Note+fmt.Sprintf("; %.1f%% started late (all workers busy)", 100*late/req), "; ")
		}
		r.add(m)
	}
}

func deleteKeys(redisURL, prefix string) {
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		return
	}
	c := redis.NewClient(opts)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	it := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var keys []string
	for it.Next(ctx) {
		keys = append(keys, it.Val())
		if len(keys) == 1000 {
			c.Del(ctx, keys...)
			keys = keys[:0]
		}
	}
	if len(keys) > 0 {
		c.Del(ctx, keys...)
	}
}

var (
	tpsRe = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	latRe = regexp.MustCompile(`latency average = ([0-9.]+) ms`)
	txRe  = regexp.MustCompile(`number of transactions actually processed: ([0-9]+)`)
)

// benchPgbench runs the minimal order transaction with pgbench on a scratch
// database: the database's ceiling for orders on this machine.
func benchPgbench(ctx context.Context, e *environment, r *report) error {
	db, err := e.database(ctx, "pgbench")
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := e.command(pctx, filepath.Join(e.logDir, "pgbench-schema.log"), "psql", "-q", "-v", "ON_ERROR_STOP=1",
		"-f", "loadtest/baseline/pgbench/schema.sql", db); err != nil {
		return fmt.Errorf("pgbench schema: %w", err)
	}
	secs := int(math.Max(5, e.o.dur.Seconds()*0.75))
	logPath := filepath.Join(e.logDir, "pgbench.log")
	err = r.profileCPU(e.procNames(), "pgbench_order_tx", func() (int64, error) {
		if err := e.command(pctx, logPath, "pgbench", "-n", "-c", fmt.Sprint(e.o.vus), "-j", "2",
			"-T", fmt.Sprint(secs), "-M", "prepared", "-f", "loadtest/baseline/pgbench/order.sql", db); err != nil {
			return 0, fmt.Errorf("pgbench: %w (log %s)", err, logPath)
		}
		out, _ := os.ReadFile(logPath)
		m := txRe.FindSubmatch(out)
		if m == nil {
			return 0, fmt.Errorf("pgbench printed no transaction count (log %s)", logPath)
		}
		return strconv.ParseInt(string(m[1]), 10, 64)
	})
	if err != nil {
		return err
	}
	out, _ := os.ReadFile(logPath)
	fmt.Print(indent(string(out)))
	tps, lat := tpsRe.FindSubmatch(out), latRe.FindSubmatch(out)
	if tps == nil || lat == nil {
		return fmt.Errorf("pgbench printed no tps/latency (log %s)", logPath)
	}
	t, _ := strconv.ParseFloat(string(tps[1]), 64)
	l, _ := strconv.ParseFloat(string(lat[1]), 64)
	r.add(measurement{Key: "pgbench_order_tx", Name: "baseline: pgbench order transaction", Group: "baseline",
		RPS: t, Mean: l, Tool: fmt.Sprintf("pgbench, %d clients, %ds", e.o.vus, secs),
		Note: "insert order + conditional stock decrement; pgbench reports the mean latency only"})
	return nil
}

// k6Measurement turns a bench.js summary into a measurement; latencies of
// the orders when orders is set, else of every request.
func k6Measurement(s k6Summary, key, name, group, tool string, orders bool) measurement {
	m := measurement{Key: key, Name: name, Group: group, Tool: tool,
		RPS:       s.value("http_reqs", "rate"),
		P50:       s.value("http_req_duration", "med"),
		P95:       s.value("http_req_duration", "p(95)"),
		P99:       s.value("http_req_duration", "p(99)"),
		ErrorRate: s.value("unexpected", "rate"),
		Requests:  int64(s.value("http_reqs", "count")),
		OrderRPS:  s.value("orders_created", "rate"),
		OrderP50:  s.value("order_duration", "med"),
		OrderP95:  s.value("order_duration", "p(95)"),
		OrderP99:  s.value("order_duration", "p(99)"),
		ReadP95:   s.value("http_req_duration{name:product}", "p(95)"),
		Dropped:   int64(s.value("dropped_iterations", "count")),
	}
	if orders {
		m.RPS, m.P50, m.P95, m.P99 = m.OrderRPS, m.OrderP50, m.OrderP95, m.OrderP99
	}
	return m
}

// benchOrders measures orders end to end on the patterns-on stack: the
// most the stack completes with VUS clients back to back, then the latency
// of an open load at 80% of that rate. Around the peak it counts the work
// the stack did (counts.go), for the floor of one order.
func benchOrders(ctx context.Context, e *environment, r *report) error {
	on, err := e.patternsOnStack(ctx)
	if err != nil {
		return err
	}
	return e.measureOrders(ctx, r, on, "orders_", "", true)
}

// measureOrders is the orders measurement on s, its keys prefix+"peak" and
// prefix+"80pct", its names ending in suffix; with count, the work of the
// peak is counted too.
func (e *environment) measureOrders(ctx context.Context, r *report, s running, prefix, suffix string, count bool) error {
	vars := func(extra map[string]string) map[string]string {
		v := e.k6Auth(map[string]string{"ORDER_URL": s.order, "INVENTORY_URL": s.inventory, "PAYMENT_URL": s.payment,
			"WORKLOAD": "orders", "DECLINE_RATE": "0", "DURATION": e.o.dur.String()})
		for k, x := range extra {
			v[k] = x
		}
		return v
	}
	limit := e.o.dur + 90*time.Second
	var sum k6Summary
	peakRun := func() (orders, requests int64, secs float64, err error) {
		err = r.profileCPU(e.procNames(), prefix+"peak", func() (int64, error) {
			err := e.takeProfiles(ctx, s.debug, prefix+"peak", e.o.dur-2*time.Second, func() error {
				var err error
				sum, err = e.runK6(ctx, prefix+"closed", filepath.Join(k6Dir, "bench.js"),
					vars(map[string]string{"MODE": "closed", "VUS": fmt.Sprint(e.o.vus)}), limit)
				return err
			})
			return int64(sum.value("orders_created", "count")), err
		})
		orders, requests = int64(sum.value("orders_created", "count")), int64(sum.value("http_reqs", "count"))
		if rate := sum.value("orders_created", "rate"); rate > 0 {
			secs = float64(orders) / rate
		}
		return orders, requests, secs, err
	}
	if count {
		c, err := e.countWork(ctx, s, floorDrain, peakRun)
		if err != nil {
			return err
		}
		r.setCounts(prefix+"peak", c)
	} else if _, _, _, err := peakRun(); err != nil {
		return err
	}
	peak := k6Measurement(sum, prefix+"peak", "orders end to end, most the stack completes"+suffix, groupOf(prefix, "orders"),
		fmt.Sprintf("k6 closed model, %d VUs", e.o.vus), true)
	r.add(peak)
	rate := int(math.Floor(0.8 * peak.RPS))
	if rate < 1 {
		return fmt.Errorf("peak order rate %.1f/s is too low to measure at 80%%", peak.RPS)
	}
	sum, err := e.runK6(ctx, prefix+"open", filepath.Join(k6Dir, "bench.js"),
		vars(map[string]string{"MODE": "open", "RATE": fmt.Sprint(rate)}), limit)
	if err != nil {
		return err
	}
	r.add(k6Measurement(sum, prefix+"80pct", fmt.Sprintf("orders end to end at 80%% of peak (%d/s)%s", rate, suffix),
		groupOf(prefix, "orders"), fmt.Sprintf("k6 open model, %d arrivals/s", rate), true))
	return nil
}

// groupOf is the report group of a measurement: the remote-database
// profile's own, else group.
func groupOf(prefix, group string) string {
	if strings.HasPrefix(prefix, "remote_") {
		return "remotedb"
	}
	return group
}

// benchSeed000 runs the same k6 mix against the patterns-off and
// patterns-on stacks: closed (peak throughput) and open at half the off
// stack's peak (latency at the same load).
func benchSeed000(ctx context.Context, e *environment, r *report) error {
	off, err := e.patternsOffStack(ctx)
	if err != nil {
		return err
	}
	on, err := e.patternsOnStack(ctx)
	if err != nil {
		return err
	}
	return e.seedCompare(ctx, r, off, on, "seed_", "")
}

// seedCompare is seed 000 on the stacks off and on, its keys beginning
// with prefix and its names ending in suffix: both back to back, then both
// at half the off stack's peak.
func (e *environment) seedCompare(ctx context.Context, r *report, off, on running, prefix, suffix string) error {
	offPeak, err := e.seedClosed(ctx, r, off, "off", prefix, suffix)
	if err != nil {
		return err
	}
	if _, err := e.seedClosed(ctx, r, on, "on", prefix, suffix); err != nil {
		return err
	}
	rate, err := seedRate(offPeak)
	if err != nil {
		return err
	}
	if err := e.seedOpen(ctx, r, off, "off", prefix, suffix, rate); err != nil {
		return err
	}
	return e.seedOpen(ctx, r, on, "on", prefix, suffix, rate)
}

// seedRate is the open load of seed 000: half the off stack's peak.
func seedRate(offPeak float64) (int, error) {
	rate := int(math.Floor(offPeak / 2))
	if rate < 1 {
		return 0, fmt.Errorf("patterns-off peak %.1f req/s is too low", offPeak)
	}
	return rate, nil
}

func seedLabel(key string) string {
	return map[string]string{"off": "patterns off", "on": "patterns on"}[key]
}

func (e *environment) seedVars(s running, extra map[string]string) map[string]string {
	v := e.k6Auth(map[string]string{"ORDER_URL": s.order, "INVENTORY_URL": s.inventory, "PAYMENT_URL": s.payment,
		"WORKLOAD": "mix", "DURATION": e.o.dur.String()})
	for k, x := range extra {
		v[k] = x
	}
	return v
}

// seedClosed runs seed 000's mix back to back against s (key "off" or
// "on") and returns its rate.
func (e *environment) seedClosed(ctx context.Context, r *report, s running, key, prefix, suffix string) (float64, error) {
	sum, err := e.runK6(ctx, prefix+"closed-"+key, filepath.Join(k6Dir, "bench.js"),
		e.seedVars(s, map[string]string{"MODE": "closed", "VUS": fmt.Sprint(e.o.vus)}), e.o.dur+90*time.Second)
	if err != nil {
		return 0, err
	}
	m := k6Measurement(sum, prefix+"peak_"+key, "mix at peak, "+seedLabel(key)+suffix, groupOf(prefix, "seed000"),
		fmt.Sprintf("k6 closed model, %d VUs", e.o.vus), false)
	r.add(m)
	return m.RPS, nil
}

// seedOpen runs seed 000's mix at rate arrivals a second against s.
func (e *environment) seedOpen(ctx context.Context, r *report, s running, key, prefix, suffix string, rate int) error {
	sum, err := e.runK6(ctx, prefix+"open-"+key, filepath.Join(k6Dir, "bench.js"),
		e.seedVars(s, map[string]string{"MODE": "open", "RATE": fmt.Sprint(rate)}), e.o.dur+90*time.Second)
	if err != nil {
		return err
	}
	r.add(k6Measurement(sum, prefix+"open_"+key, fmt.Sprintf("mix at %d req/s, %s%s", rate, seedLabel(key), suffix),
		groupOf(prefix, "seed000"), fmt.Sprintf("k6 open model, %d arrivals/s", rate), false))
	return nil
}

// stopOff stops the patterns-off stack once seed 000 is done: the phases
// after it measure the patterns-on stack alone.
func stopOff(_ context.Context, e *environment, _ *report) error {
	if e.off != nil {
		e.stop(*e.off)
		e.off = nil
	}
	return nil
}

// stopOn stops the patterns-on stack once the phases that share it are
// done: the trust phase starts stacks of its own.
func stopOn(_ context.Context, e *environment, _ *report) error {
	if e.on != nil {
		e.stop(*e.on)
		e.on = nil
	}
	return nil
}

// benchBreaker runs the breaker scenario against the patterns-on stack: a
// provider outage mid-run, then healed.
func benchBreaker(ctx context.Context, e *environment, r *report) error {
	on, err := e.patternsOnStack(ctx)
	if err != nil {
		return err
	}
	s, err := e.runK6(ctx, "breaker", filepath.Join(k6Dir, "breaker.js"), e.k6Auth(map[string]string{
		"ORDER_URL": on.order, "INVENTORY_URL": on.inventory, "PAYMENT_URL": on.payment,
		"RATE": "20", "OUTAGE_AT": "8s", "OUTAGE_FOR": "15s", "OPENING": "2s", "AFTER": "10s",
	}), 3*time.Minute)
	if err != nil {
		return err
	}
	for _, p := range []string{"before", "open", "after"} {
		sub := "order_duration{phase:" + p + "}"
		m := measurement{Key: "breaker_" + p, Name: "orders, provider outage: " + p, Group: "breaker",
			Tool: "k6 breaker.js, 20 orders/s", RPS: 0,
			P50: s.value(sub, "med"), P95: s.value(sub, "p(95)"), P99: s.value(sub, "p(99)"),
			ErrorRate: s.value("unexpected{phase:"+p+"}", "rate")}
		if p == "open" {
			m.Note = fmt.Sprintf("%.1f%% answered 503 with Retry-After", 100*s.value("outage_answered_503{phase:open}", "rate"))
			m.ErrorRate = 0
		}
		r.add(m)
	}
	return nil
}
