package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"

	"github.com/orderflow/orderflow/test/stack"
)

// The remote-database profile: on loopback a primary-key SELECT is nearly
// as cheap as a Redis GET, so what caching buys is measured again with the
// database a network hop away. Toxiproxy (the module's pinned tool) stands
// in front of PostgreSQL and adds remoteLatency to every chunk of data in
// each direction; the services reach their databases through it, Redis and
// SQS as before.

// remoteLatency is the delay Toxiproxy adds each way.
const remoteLatency = time.Millisecond

// toxiproxyBinary is the Toxiproxy server the bench builds into its bin dir;
// the CPU profiles name it by it.
const toxiproxyBinary = "toxiproxy-server"

// readUncached is an inventory alone without its cache and rate limit.
var readUncached = config{"inventory": {"INVENTORY_CACHE_ENABLED=false", "INVENTORY_RATE_LIMIT=0"}}

// startToxiproxy starts a Toxiproxy server with one proxy in front of the
// -postgres server, adding remoteLatency upstream and downstream, and
// returns the proxy's host:port and a function that stops it.
func (e *environment) startToxiproxy(ctx context.Context) (string, func(), error) {
	api, err1 := stack.FreePort()
	listen, err2 := stack.FreePort()
	if err1 != nil || err2 != nil {
		return "", nil, fmt.Errorf("free ports: %v %v", err1, err2)
	}
	u, err := url.Parse(e.o.pgURL)
	if err != nil || u.Host == "" {
		return "", nil, fmt.Errorf("-postgres %q: no host", e.o.pgURL)
	}
	upstream := u.Host
	if u.Port() == "" {
		upstream += ":5432"
	}
	cmd, err := e.startBackground("toxiproxy", nil, filepath.Join(e.dir, toxiproxyBinary),
		"-host", "127.0.0.1", "-port", fmt.Sprint(api))
	if err != nil {
		return "", nil, err
	}
	stop := func() { e.stopBackground(cmd) }
	apiAddr := fmt.Sprintf("127.0.0.1:%d", api)
	if err := waitPort(ctx, apiAddr, 30*time.Second); err != nil {
		stop()
		return "", nil, fmt.Errorf("toxiproxy: %w", err)
	}
	client := toxiproxy.NewClient(apiAddr)
	addr := fmt.Sprintf("127.0.0.1:%d", listen)
	proxy, err := client.CreateProxy("postgres", addr, upstream)
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("toxiproxy: create the postgres proxy: %w", err)
	}
	ms := int(remoteLatency / time.Millisecond)
	for _, stream := range []string{"upstream", "downstream"} {
		if _, err := proxy.AddToxic("latency_"+stream, "latency", stream, 1, toxiproxy.Attributes{"latency": ms, "jitter": 0}); err != nil {
			stop()
			return "", nil, fmt.Errorf("toxiproxy: %s latency: %w", stream, err)
		}
	}
	say("Toxiproxy on %s: PostgreSQL %s behind %s, +%d ms each way", apiAddr, upstream, addr, ms)
	return addr, stop, nil
}

// benchRemoteDB measures the read path, orders and seed 000 with the
// database behind Toxiproxy. The reads run loopback and remote inventories
// in the same interleaved slices (cached and uncached each), so the two
// profiles are side by side under the same machine load; orders and seed
// 000 are the orders and seed000 phases' measurements, repeated on remote
// stacks, one stack at a time.
func benchRemoteDB(ctx context.Context, e *environment, r *report) error {
	addr, stop, err := e.startToxiproxy(ctx)
	if err != nil {
		return err
	}
	defer stop()
	if err := e.remoteReads(ctx, r, addr); err != nil {
		return err
	}
	// One full stack at a time: PostgreSQL's max_connections is shared with
	// whatever else runs on the server. The off stack first, for the open
	// rate of seed 000 (half its peak), then the on stack at the same rate.
	off, err := e.stackVia(ctx, "rdb-off", patternsOff, "", addr)
	if err != nil {
		return err
	}
	if off, err = e.withSyncNotify(ctx, off); err != nil {
		e.stop(off)
		return err
	}
	const prefix, suffix = "remote_seed_", ", remote DB"
	offPeak, err := e.seedClosed(ctx, r, off, "off", prefix, suffix)
	if err != nil {
		e.stop(off)
		return err
	}
	rate, err := seedRate(offPeak)
	if err == nil {
		err = e.seedOpen(ctx, r, off, "off", prefix, suffix, rate)
	}
	e.stop(off)
	if err != nil {
		return err
	}
	on, err := e.stackVia(ctx, "rdb-on", patternsOn, "", addr)
	if err != nil {
		return err
	}
	defer e.stop(on)
	if err := e.measureOrders(ctx, r, on, "remote_orders_", suffix, false); err != nil {
		return err
	}
	if _, err := e.seedClosed(ctx, r, on, "on", prefix, suffix); err != nil {
		return err
	}
	return e.seedOpen(ctx, r, on, "on", prefix, suffix, rate)
}

// remoteTargets are the read targets of the profile, loopback and remote.
var remoteTargets = []struct{ key, name string }{
	{"loop_cached", "product GET cached, loopback DB"},
	{"loop_uncached", "product GET uncached, loopback DB"},
	{"db_cached", "product GET cached, remote DB"},
	{"db_uncached", "product GET uncached, remote DB"},
}

// remoteReads runs readbench closed (throughput at the same concurrency)
// and open at 80% of the remote uncached peak (latency at the same load)
// over four inventories: cached and uncached, loopback and remote.
func (e *environment) remoteReads(ctx context.Context, r *report, addr string) error {
	targets := map[string]running{}
	for _, t := range []struct {
		key   string
		cfg   config
		proxy string
	}{{"loop_cached", readCached, ""}, {"loop_uncached", readUncached, ""},
		{"db_cached", readCached, addr}, {"db_uncached", readUncached, addr}} {
		s, err := e.stackVia(ctx, "rdb-read-"+t.key, t.cfg, "inventory", t.proxy)
		if err != nil {
			return err
		}
		defer e.stop(s)
		targets[t.key] = s
	}
	conc := 2 * e.o.vus
	rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	run := func(name string, extra ...string) (map[string]readResult, error) {
		args := append([]string{"-d", e.o.readDur.String(), "-slice", "2s", "-skus", "1000"}, extra...)
		for _, t := range remoteTargets {
			args = append(args, "-t", t.key+"="+targets[t.key].inventory)
		}
		logPath := filepath.Join(e.logDir, name+".log")
		err := e.command(rctx, logPath, filepath.Join(e.dir, "readbench"), args...)
		out := readLog(logPath)
		fmt.Print(indent(out))
		if err != nil {
			return nil, fmt.Errorf("readbench: %w (log %s)", err, logPath)
		}
		return parseReadbench(out), nil
	}
	say("remote DB: readbench, %d workers, loopback and remote inventories interleaved", conc)
	res, err := run("remote-reads", "-c", fmt.Sprint(conc))
	if err != nil {
		return err
	}
	tool := fmt.Sprintf("readbench, %d workers, interleaved", conc)
	for _, t := range remoteTargets {
		kv, ok := res[t.key]
		if !ok {
			return fmt.Errorf("readbench printed no result for %s", t.key)
		}
		r.add(readMeasurement(kv, "remote_read_"+t.key, t.name+fmt.Sprintf(", %d workers", conc), "remotedb", tool))
	}
	peak, _ := r.get("remote_read_db_uncached")
	rate := math.Floor(0.8 * peak.RPS)
	if rate < 1 {
		return fmt.Errorf("remote uncached peak %.1f req/s is too low", peak.RPS)
	}
	say("remote DB: all four at %.0f req/s (80%% of the remote uncached peak), open model", rate)
	res, err = run("remote-reads-same-load", "-c", fmt.Sprint(2*conc), "-rate", fmt.Sprint(rate))
	if err != nil {
		return err
	}
	tool = fmt.Sprintf("readbench open model, %.0f req/s", rate)
	for _, t := range remoteTargets {
		kv, ok := res[t.key]
		if !ok {
			return fmt.Errorf("readbench printed no result for %s", t.key)
		}
		r.add(readMeasurement(kv, "remote_same_"+t.key, t.name+fmt.Sprintf(", at %.0f req/s", rate), "remotedb", tool))
	}
	return nil
}

// remoteMarkdown writes the remote-database profile beside loopback.
func (r *report) remoteMarkdown(b *bytes.Buffer) {
	g := func(k string) (measurement, bool) { return r.get(k) }
	lc, ok1 := g("remote_read_loop_cached")
	lu, ok2 := g("remote_read_loop_uncached")
	dc, ok3 := g("remote_read_db_cached")
	du, ok4 := g("remote_read_db_uncached")
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## What caching buys when the database is not on loopback\n\n")
	w("The remote-database profile: Toxiproxy (github.com/Shopify/toxiproxy/v2, the module's pinned tool) in front\n")
	lat := int(remoteLatency / time.Millisecond)
	w("of PostgreSQL adds %d ms to every chunk of data each way, so a query's round trip takes %d ms more, as with a\n", lat, 2*lat)
	w("database on another machine of the same network. The services reach their databases through it; Redis\n")
	w("and SQS stay on loopback. Reads: four inventories (cached and uncached, loopback and remote) in the same\n")
	w("interleaved 2 s slices of loadtest/readbench, first back to back (throughput at the same concurrency),\n")
	w("then all four at the same open load, 80%% of the remote uncached peak. Orders and seed 000 repeat the\n")
	w("phases above on stacks whose databases are remote, one stack at a time (off first: seed 000's open rate is\n")
	w("half its peak); their loopback columns are those phases' figures.\n")
	w("Toxiproxy runs on the same CPUs (its CPU is in the profiles as toxiproxy-server).\n\n")
	w("| figure | loopback DB | remote DB (+%d ms each way) |\n|---|---:|---:|\n", lat)
	w("| cached product GET, req/s (same concurrency) | %s | %s |\n", rps(lc.RPS), rps(dc.RPS))
	w("| uncached product GET, req/s | %s | %s |\n", rps(lu.RPS), rps(du.RPS))
	w("| **cached ÷ uncached throughput** | **%.2f×** | **%.2f×** |\n", lc.RPS/lu.RPS, dc.RPS/du.RPS)
	sc, okA := g("remote_same_loop_cached")
	su, okB := g("remote_same_loop_uncached")
	rc, okC := g("remote_same_db_cached")
	ru, okD := g("remote_same_db_uncached")
	if okA && okB && okC && okD {
		pp := func(m measurement) string { return fmt.Sprintf("%s / %s / %s", ms(m.P50), ms(m.P95), ms(m.P99)) }
		w("| cached p50 / p95 / p99 ms, at %s req/s | %s | %s |\n", rps(ru.RPS), pp(sc), pp(rc))
		w("| uncached p50 / p95 / p99 ms, at %s req/s | %s | %s |\n", rps(ru.RPS), pp(su), pp(ru))
		if su.P95 > 0 && ru.P95 > 0 {
			w("| **p95 cut by the cache at the same load** | **%.0f%%** | **%.0f%%** |\n", 100*(1-sc.P95/su.P95), 100*(1-rc.P95/ru.P95))
		}
	}
	pair := func(label, loopKey, remoteKey string, f func(measurement) string) {
		a, okA := g(loopKey)
		c, okC := g(remoteKey)
		if !okA && !okC {
			return
		}
		cell := func(m measurement, ok bool) string {
			if !ok {
				return "–"
			}
			return f(m)
		}
		w("| %s | %s | %s |\n", label, cell(a, okA), cell(c, okC))
	}
	perS := func(m measurement) string { return rps(m.RPS) }
	pct := func(m measurement) string {
		return fmt.Sprintf("%s / %s / %s at %s/s", ms(m.P50), ms(m.P95), ms(m.P99), rps(m.RPS))
	}
	pair(fmt.Sprintf("orders/s, most the stack completes (%s VUs)", r.Params["vus"]), "orders_peak", "remote_orders_peak", perS)
	pair("order p50 / p95 / p99 ms at 80% of that stack's peak", "orders_80pct", "remote_orders_80pct", pct)
	pair("seed 000 mix at peak, patterns off, req/s", "seed_peak_off", "remote_seed_peak_off", perS)
	pair("seed 000 mix at peak, patterns on, req/s", "seed_peak_on", "remote_seed_peak_on", perS)
	orderP95 := func(m measurement) string { return fmt.Sprintf("%s ms (product %s ms)", ms(m.OrderP95), ms(m.ReadP95)) }
	pair("seed 000 at half the off peak, patterns off: order p95", "seed_open_off", "remote_seed_open_off", orderP95)
	pair("seed 000 at half the off peak, patterns on: order p95", "seed_open_on", "remote_seed_open_on", orderP95)
	w("\n")
	w("| measurement | req/s | p50 ms | p95 ms | p99 ms | errors | load | note |\n|---|---:|---:|---:|---:|---:|---|---|\n")
	for _, x := range r.Measurements {
		if x.Group != "remotedb" {
			continue
		}
		note := x.Note
		if x.OrderRPS > 0 && x.RPS != x.OrderRPS {
			note = fmt.Sprintf("orders: %s/s, p95 %s ms; product p95 %s ms", rps(x.OrderRPS), ms(x.OrderP95), ms(x.ReadP95))
		}
		w("| %s | %s | %s | %s | %s | %.2f%% | %s | %s |\n", x.Name, rps(x.RPS), ms(x.P50), ms(x.P95), ms(x.P99),
			100*x.ErrorRate, x.Tool, note)
	}
	w("\n")
	if p, ok := r.CPU["remote_orders_peak"]; ok {
		if t, ok := p.share(toxiproxyBinary); ok {
			w("Toxiproxy itself spent %.3f ms of CPU per order at the remote peak (of %.3f ms on the whole machine).\n\n", t.MsPer, p.TotalMs)
		}
	}
}

// readLog is a log file's text ("" when it cannot be read).
func readLog(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
