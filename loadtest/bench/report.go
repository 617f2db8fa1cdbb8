package main

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// measurement is one figure set: a configuration under one load.
type measurement struct {
	Key       string  `json:"key"`
	Name      string  `json:"name"`
	Group     string  `json:"group"` // baseline, inventory, orders, seed000, breaker
	Tool      string  `json:"tool"`
	RPS       float64 `json:"rps"`
	P50       float64 `json:"p50_ms"`
	P95       float64 `json:"p95_ms"`
	P99       float64 `json:"p99_ms"`
	Mean      float64 `json:"mean_ms,omitempty"`
	ErrorRate float64 `json:"error_rate"`
	Requests  int64   `json:"requests,omitempty"`
	// The k6 mix measurements also keep the orders and reads apart.
	OrderRPS float64 `json:"order_rps,omitempty"`
	OrderP50 float64 `json:"order_p50_ms,omitempty"`
	OrderP95 float64 `json:"order_p95_ms,omitempty"`
	OrderP99 float64 `json:"order_p99_ms,omitempty"`
	ReadP95  float64 `json:"read_p95_ms,omitempty"`
	Dropped  int64   `json:"dropped_iterations,omitempty"`
	Note     string  `json:"note,omitempty"`
}

// ratio is one comparison the report states.
type ratio struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Text  string  `json:"text"`
}

// target is one of the issues' targets and whether this run met it.
type target struct {
	Name     string `json:"name"`
	Target   string `json:"target"`
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
	Verdict  string `json:"verdict"`
}

// machine describes where the figures were measured.
type machine struct {
	Date       string `json:"date"`
	CPUs       int    `json:"cpus"`
	CPUModel   string `json:"cpu_model"`
	MemoryGiB  string `json:"memory_gib"`
	GoVersion  string `json:"go_version"`
	Kernel     string `json:"kernel"`
	Postgres   string `json:"postgres"`
	K6         string `json:"k6"`
	LoadBefore string `json:"load_average_before"`
	LoadAfter  string `json:"load_average_after"`
	// PGConnections is max_connections and how many were in use at start.
	PGConnections string `json:"postgres_connections"`
}

type report struct {
	Machine      machine           `json:"machine"`
	Params       map[string]string `json:"parameters"`
	Elapsed      string            `json:"elapsed"`
	Measurements []measurement     `json:"measurements"`
	Ratios       []ratio           `json:"ratios"`
	Targets      []target          `json:"targets"`
	Findings     []string          `json:"findings"`
	// CPU is where the CPU went per operation, by process, in the
	// measurements that have a key here.
	CPU   map[string]cpuProfile `json:"cpu,omitempty"`
	Notes []string              `json:"notes,omitempty"`
	// Reruns are the phases measured again on their own (-only) and
	// merged into this report since the run that Machine describes.
	Reruns []rerun `json:"reruns,omitempty"`
	// Counts are the work a stack did during the measurements that have a
	// key here (the floor of one order).
	Counts map[string]workCounts `json:"counts,omitempty"`
	// history are the runs on record before this one (history.go).
	history []historyEntry
}

func (r *report) setCounts(key string, c workCounts) {
	if r.Counts == nil {
		r.Counts = map[string]workCounts{}
	}
	r.Counts[key] = c
}

// rerun is one -only run merged into the report.
type rerun struct {
	Phases        []string          `json:"phases"`
	Date          string            `json:"date"`
	Elapsed       string            `json:"elapsed"`
	LoadBefore    string            `json:"load_average_before"`
	LoadAfter     string            `json:"load_average_after"`
	PGConnections string            `json:"postgres_connections"`
	Params        map[string]string `json:"parameters"`
}

// addRerun records x; earlier reruns of the same phases no longer hold
// figures of the report and are forgotten.
func (r *report) addRerun(x rerun) {
	var kept []rerun
	for _, old := range r.Reruns {
		var left []string
		for _, p := range old.Phases {
			if !slices.Contains(x.Phases, p) {
				left = append(left, p)
			}
		}
		if len(left) > 0 {
			old.Phases = left
			kept = append(kept, old)
		}
	}
	r.Reruns = append(kept, x)
}

func (r *report) add(m measurement) { r.Measurements = append(r.Measurements, m) }

func (r *report) get(key string) (measurement, bool) {
	for _, m := range r.Measurements {
		if m.Key == key {
			return m, true
		}
	}
	return measurement{}, false
}

func describeMachine(load string) machine {
	m := machine{Date: time.Now().UTC().Format(time.RFC3339), CPUs: runtime.NumCPU(), GoVersion: runtime.Version(),
		LoadBefore: load}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				m.MemoryGiB = fmt.Sprintf("%.1f", kb/1024/1024)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("pgbench", "--version").Output(); err == nil {
		m.Postgres = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("bin/k6", "version").Output(); err == nil {
		m.K6 = strings.TrimSpace(string(out))
	}
	return m
}

// evaluate computes the ratios and judges the targets (issue 17's first).
func (r *report) evaluate() {
	addRatio := func(name string, v float64, format string) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return
		}
		r.Ratios = append(r.Ratios, ratio{Name: name, Value: v, Text: fmt.Sprintf(format, v)})
	}
	// A target whose measurements failed more than 1% of their requests
	// is not judged: the figures measured errors, not the pattern.
	addTarget := func(name, want, measured string, met bool, from ...measurement) {
		v := "met"
		if !met {
			v = "MISSED"
		}
		for _, m := range from {
			if m.ErrorRate > 0.01 {
				met, v = false, fmt.Sprintf("INVALID: %s had %.1f%% errors", m.Key, 100*m.ErrorRate)
				note := fmt.Sprintf("%s: %.1f%% of its requests failed; see the services' "+
					"logs (-logs DIR). A common cause is PostgreSQL's max_connections shared with other work.",
					m.Name, 100*m.ErrorRate)
				if !slices.Contains(r.Notes, note) { // -render and merges evaluate again
					r.Notes = append(r.Notes, note)
				}
			}
		}
		r.Targets = append(r.Targets, target{Name: name, Target: want, Measured: measured, Met: met, Verdict: v})
	}
	bare, okBare := r.get("read_bare")
	redisget, okRedis := r.get("read_redisget")
	pgxget, okPgx := r.get("read_pgxget")
	cached, okCached := r.get("read_cached")
	uncached, okUncached := r.get("read_uncached")
	pgb, okPgb := r.get("pgbench_order_tx")
	peak, okPeak := r.get("orders_peak")
	at80, ok80 := r.get("orders_80pct")
	offOpen, okOffOpen := r.get("seed_open_off")
	onOpen, okOnOpen := r.get("seed_open_on")
	offPeak, okOffPeak := r.get("seed_peak_off")
	onPeak, okOnPeak := r.get("seed_peak_on")
	open, okOpen := r.get("breaker_open")

	if okCached && okRedis {
		addRatio("cached product GET / bare go-redis handler (throughput)", cached.RPS/redisget.RPS, "%.3f")
	}
	if okCached && okBare {
		addRatio("cached product GET / bare net/http JSON handler (throughput)", cached.RPS/bare.RPS, "%.2f")
	}
	if okUncached && okPgx {
		addRatio("uncached product GET / bare pgx SELECT handler (throughput)", uncached.RPS/pgxget.RPS, "%.2f")
	}
	if okCached && okUncached {
		addRatio("cached / uncached product GET (throughput; issue 6's 3x target retired by issue 17)", cached.RPS/uncached.RPS, "%.2fx")
	}
	if okRedis && okPgx {
		addRatio("bound for a Redis cache: bare go-redis / bare pgx handler (throughput)", redisget.RPS/pgxget.RPS, "%.2fx")
	}
	if okBare && okPgx {
		addRatio("bound for any cache: bare JSON / bare pgx handler (throughput)", bare.RPS/pgxget.RPS, "%.2fx")
	}
	sameCached, okSameCached := r.get("read_same_cached")
	sameUncached, okSameUncached := r.get("read_same_uncached")
	if okSameCached && okSameUncached {
		addRatio("product GET p95 cut at the same load, cached vs uncached", 1-sameCached.P95/sameUncached.P95, "%.2f")
	}
	if okPeak && okPgb {
		addRatio("orders end to end / pgbench order transactions (issue 9's 1/8 target, retired by issue 17)", peak.RPS/pgb.RPS, "%.3f")
	}
	if okPeak && okBare {
		addRatio("orders end to end / bare net/http JSON handler", peak.RPS/bare.RPS, "%.4f")
	}
	if okOnPeak && okOffPeak {
		addRatio("seed 000 peak throughput, patterns on / off", onPeak.RPS/offPeak.RPS, "%.2fx")
		addRatio("seed 000 peak p95 cut (all requests), on vs off", 1-onPeak.P95/offPeak.P95, "%.2f")
	}
	if okOnOpen && okOffOpen {
		addRatio("seed 000 order p95 cut at the same load, on vs off", 1-onOpen.OrderP95/offOpen.OrderP95, "%.2f")
		addRatio("seed 000 p95 cut (all requests) at the same load, on vs off", 1-onOpen.P95/offOpen.P95, "%.2f")
	}

	if f, ok := r.orderFloor(); ok {
		addRatio("floor of one order, ms of CPU", f.Floor, "%.3f ms")
		addRatio("whole-machine CPU per order ÷ floor", f.Ratio(), "%.2f×")
		for _, row := range f.Rows {
			if row.Floor > 0 {
				addRatio("CPU per order ÷ floor: "+row.Role, row.Ratio(), "%.2f×")
			}
		}
	}
	if p, ok := r.CPU["orders_peak"]; ok && okPeak {
		addTarget(targetCPUPerOrder, "≤ 6 ms (≥ 330 orders/s on 2 CPUs)",
			fmt.Sprintf("%.2f ms (%.0f orders/s at that cost on %d CPUs; measured %.0f orders/s)", p.TotalMs,
				1000*float64(r.Machine.CPUs)/p.TotalMs, r.Machine.CPUs, peak.RPS), p.TotalMs <= 6, peak)
		if f, ok := r.orderFloor(); ok {
			what := fmt.Sprintf("%.2f× (%.2f ms ÷ %.3f ms)", f.Ratio(), f.Total, f.Floor)
			if f.Fallback {
				what += "; SQL floor from transactions only (no pg_stat_statements)"
			}
			addTarget(targetCPUFloor, "≤ 1.8×", what, f.Ratio() <= 1.8, peak)
		}
		g := goCPU(p)
		var parts []string
		for _, s := range goServices {
			sh, _ := p.share(s)
			parts = append(parts, fmt.Sprintf("%s %.2f", s, sh.MsPer))
		}
		addTarget(targetGoCPU, "≤ 2.0 ms", fmt.Sprintf("%.2f ms (%s)", g, strings.Join(parts, ", ")), g <= 2.0, peak)
	}
	if ok80 {
		this := at80.P95 <= 100 && at80.P95 > 0
		met, runs := recentMet(r.history, at80.P95, "order_p95_80pct_ms", 5, func(v float64) bool { return v <= 100 })
		addTarget(targetOrderP95, "≤ 100 ms in ≥ 4 of 5 consecutive runs",
			fmt.Sprintf("%.1f ms at %.0f orders/s (%d dropped) this run; met in %d of the last %d runs on record with it",
				at80.P95, at80.RPS, at80.Dropped, met, runs),
			this && met >= 4, at80)
	}
	if okCached && okRedis {
		v := cached.RPS / redisget.RPS
		addTarget(targetCachedRedis, "≥ 0.85",
			fmt.Sprintf("%.3f (%.0f vs %.0f req/s)", v, cached.RPS, redisget.RPS), v >= 0.85, cached, redisget)
	}
	if okCached && okUncached && okRedis && okPgx {
		v, bound := cached.RPS/uncached.RPS, redisget.RPS/pgxget.RPS
		addTarget(targetCacheBound, "≥ 0.9 × bound",
			fmt.Sprintf("%.2f× of a %.2f× bound = %.2f (%.0f vs %.0f req/s; bound %.0f vs %.0f)", v, bound, v/bound,
				cached.RPS, uncached.RPS, redisget.RPS, pgxget.RPS), v >= 0.9*bound, cached, uncached, redisget, pgxget)
	}
	if okSameCached && okSameUncached {
		cut := 1 - sameCached.P95/sameUncached.P95
		addTarget("product read p95, cached vs uncached at the same load (issue 6)", "≥ 62% lower",
			fmt.Sprintf("%.0f%% lower (%.2f vs %.2f ms at %.0f req/s)", 100*cut, sameCached.P95, sameUncached.P95, sameUncached.RPS),
			cut >= 0.62, sameCached, sameUncached)
	}
	if okOnOpen && okOffOpen {
		cut := 1 - onOpen.OrderP95/offOpen.OrderP95
		addTarget("order p95, e-mail/invoice queued vs the client waiting for them (same load)", "≥ 62% lower",
			fmt.Sprintf("%.0f%% lower (%.1f vs %.1f ms)", 100*cut, onOpen.OrderP95, offOpen.OrderP95), cut >= 0.62, onOpen, offOpen)
	}
	if okOpen {
		addTarget("order p99 after the breaker opens (provider outage)", "< 100 ms",
			fmt.Sprintf("%.1f ms", open.P99), open.P99 < 100 && open.P99 > 0, open)
	}
	if c, ok := r.get("remote_read_db_cached"); ok {
		if u, ok := r.get("remote_read_db_uncached"); ok && u.RPS > 0 {
			addRatio("remote DB: cached / uncached product GET (throughput)", c.RPS/u.RPS, "%.2fx")
		}
	}
	if c, ok := r.get("remote_same_db_cached"); ok {
		if u, ok := r.get("remote_same_db_uncached"); ok && u.P95 > 0 {
			addRatio("remote DB: product GET p95 cut at the same load, cached vs uncached", 1-c.P95/u.P95, "%.2f")
		}
	}
	if on, ok := r.get("remote_seed_open_on"); ok {
		if off, ok := r.get("remote_seed_open_off"); ok && off.OrderP95 > 0 {
			addRatio("remote DB: seed 000 order p95 cut at the same load, on vs off", 1-on.OrderP95/off.OrderP95, "%.2f")
		}
	}
	r.evaluateTrust(addRatio, addTarget)
	r.findings()
	r.trustFindings()
}

// Issue 17's targets, by the names the report gives them.
const (
	targetCPUPerOrder = "whole-machine CPU per order (issue 17)"
	targetCPUFloor    = "whole-machine CPU per order ÷ the floor of one order (issue 17)"
	targetGoCPU       = "Go services' CPU per order, all five (issue 17)"
	targetOrderP95    = "order p95 at 80% of the measured peak (issue 17)"
	targetCachedRedis = "cached product GET ÷ bare go-redis handler, throughput (issue 17)"
	targetCacheBound  = "cached ÷ uncached product GET ÷ the bound (bare go-redis ÷ bare pgx), throughput (issue 17)"
)

// findings explains, with this run's own figures, where a target was missed.
// They are what the figures show, not guesses: each names the measurement
// it rests on.
func (r *report) findings() {
	add := func(format string, args ...any) { r.Findings = append(r.Findings, fmt.Sprintf(format, args...)) }
	missed := map[string]bool{}
	for _, t := range r.Targets {
		if !t.Met {
			missed[t.Name] = true
		}
	}
	if len(missed) > 0 {
		add("The machine was shared: load average %s before and %s after the run on %d CPUs. Everything "+
			"that needs CPU time (services, PostgreSQL, Redis, k6, and other processes) queued for it, which "+
			"inflates every latency and lowers every rate; the ratios measured side by side are the figures "+
			"to trust.", r.Machine.LoadBefore, r.Machine.LoadAfter, r.Machine.CPUs)
	}
	if f, ok := r.orderFloor(); ok && (missed[targetCPUPerOrder] || missed[targetCPUFloor] || missed[targetGoCPU]) {
		var worst floorRow
		for _, row := range f.Rows {
			if row.Floor > 0 && row.Actual-row.Floor > worst.Actual-worst.Floor {
				worst = row
			}
		}
		add("CPU per order: %.2f ms on the whole machine against a floor of %.3f ms for the same work done barely "+
			"(%.2f×; \"The floor of one order\"). The largest gap is %s: %.3f ms per order against %.3f ms for its "+
			"share of the bare work (%.1f×). What the floor leaves out is what a service does around its I/O: "+
			"routing, JSON, validation, token checks, rate limiting, resilience policies, the saga; that is "+
			"where a profile (pprof under this load) has to look.", f.Total, f.Floor, f.Ratio(), worst.Role,
			worst.Actual, worst.Floor, worst.Ratio())
	}
	at80, ok80 := r.get("orders_80pct")
	if ok80 && missed[targetOrderP95] {
		add("Order p95 at 80%% of the peak: %.1f ms at %.0f orders/s (p50 %.1f ms). At 80%% of the most "+
			"the machine completes, its CPUs are busy about 80%% of the time, and an order's steps each "+
			"queue for a CPU behind the background work (relay, workers, SQS, SMTP) and the load "+
			"generator: the tail is queueing, not a slow step (at 20 orders/s in the outage phase below the "+
			"p95 is %s ms). Less CPU per order raises the peak and shortens the queues alike.",
			at80.P95, at80.RPS, at80.P50, breakerBeforeP95(r))
	}
	redisget, okRedis := r.get("read_redisget")
	cached, okCached := r.get("read_cached")
	uncached, okUncached := r.get("read_uncached")
	pgxget, okPgx := r.get("read_pgxget")
	if okRedis && okCached && missed[targetCachedRedis] {
		add("Cached reads: %.0f req/s against %.0f for the bare go-redis handler (%.3f). Both make the same "+
			"Redis round trip and the same HTTP exchange; the rest is what inventory adds on a hit: its "+
			"middleware, the rate limiter and token handling, the product's ETag and JSON, the cache's "+
			"generation check.", cached.RPS, redisget.RPS, cached.RPS/redisget.RPS)
	}
	if okCached && okUncached && okRedis && okPgx && missed[targetCacheBound] {
		bound := redisget.RPS / pgxget.RPS
		add("Cached vs uncached reads: %.2f× against a bound of %.2f× measured in the same slices (the bare "+
			"go-redis handler %.0f req/s, the bare pgx handler %.0f): %.2f of it. Whatever inventory adds costs "+
			"its cached and uncached reads alike and so pulls the ratio towards 1; the remote-database profile "+
			"shows the ratio when the database is a network hop away.", cached.RPS/uncached.RPS, bound,
			redisget.RPS, pgxget.RPS, (cached.RPS/uncached.RPS)/bound)
	}
	if sc, ok1 := r.get("read_same_cached"); ok1 && missed["product read p95, cached vs uncached at the same load (issue 6)"] {
		if su, ok2 := r.get("read_same_uncached"); ok2 {
			add("Read p95 at the same load: cached %.2f ms vs uncached %.2f ms at %.0f req/s (p50 %.2f vs %.2f ms). "+
				"At the same arrival rate both servers have CPU to spare, and the p95 of a sub-millisecond "+
				"request is set by scheduling on %d shared CPUs more than by the read itself.",
				sc.P95, su.P95, su.RPS, sc.P50, su.P50, r.Machine.CPUs)
		}
	}
	before, okB := r.get("breaker_before")
	open, okO := r.get("breaker_open")
	if okB && okO && missed["order p99 after the breaker opens (provider outage)"] {
		add("Provider outage: with payment's breaker open the order p50 is %.1f ms (before the outage: "+
			"%.1f ms) and p99 %.1f ms. An open breaker answers the payment call at once, but the saga "+
			"still runs everything before it: store the pending order, reserve the stock in inventory, "+
			"store the prices, and after the rejection release the reservation and store the failure — "+
			"4 database transactions and 2 inventory calls for an order that cannot succeed. Checking "+
			"the payment breaker before reserving (fail fast at the start of the saga) would leave one "+
			"transaction; the tail is CPU queueing on this machine.", open.P50, before.P50, open.P99)
	}
}

// breakerBeforeP95 is the order p95 at 20 orders/s, before the outage.
func breakerBeforeP95(r *report) string {
	if m, ok := r.get("breaker_before"); ok {
		return ms(m.P95)
	}
	return "–"
}

func (r *report) write(o options) error {
	if err := os.MkdirAll(o.imgDir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(o.jsonOut, append(b, '\n'), 0o644); err != nil {
		return err
	}
	latency, throughput := r.charts()
	if err := os.WriteFile(filepath.Join(o.imgDir, "bench-latency.svg"), latency, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.imgDir, "bench-throughput.svg"), throughput, 0o644); err != nil {
		return err
	}
	if len(r.history) > 0 {
		if err := os.WriteFile(filepath.Join(o.imgDir, "bench-history.svg"), historyChart(r.history), 0o644); err != nil {
			return err
		}
	}
	rel, err := filepath.Rel(filepath.Dir(o.mdOut), o.imgDir)
	if err != nil {
		rel = o.imgDir
	}
	return os.WriteFile(o.mdOut, r.markdown(rel), 0o644)
}

// params writes run parameters as flags, in a stable order.
func params(p map[string]string) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(p)) {
		out = append(out, fmt.Sprintf("-%s %s", strings.ReplaceAll(k, "_", "-"), p[k]))
	}
	return strings.Join(out, " ")
}

func ms(v float64) string {
	switch {
	case v == 0:
		return "–"
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.1f", v)
	}
}

func rps(v float64) string {
	if v == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f", v)
}

// changes is the section "What we changed and what it bought": the CPU
// cuts made for issue 17, each with the side-by-side runs that measured it.
// Those runs are not this run, so the section is written by hand, not
// generated.
//
//go:embed changes.md
var changes string

func (r *report) markdown(img string) []byte {
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := r.Machine
	w("# Benchmarks\n\n")
	w("Generated by `make bench` (scripts/bench.sh → loadtest/bench) on %s in %s. Re-run it to regenerate this\n", m.Date, r.Elapsed)
	w("file, [benchmarks.json](benchmarks.json) and the charts. Every figure below comes from that one run, on\n")
	w("one machine, over loopback: the load generator shares the CPUs with the services, PostgreSQL and Redis,\n")
	w("so the figures are this machine's, and the **ratios** are what carries over to another machine.\n\n")
	w("| machine | |\n|---|---|\n")
	w("| CPUs | %d × %s |\n| memory | %s GiB |\n| Go | %s |\n| kernel | %s |\n| PostgreSQL | %s |\n| k6 | %s |\n",
		m.CPUs, m.CPUModel, m.MemoryGiB, m.GoVersion, m.Kernel, m.Postgres, m.K6)
	w("| load average (1/5/15 min) | %s before, %s after |\n", m.LoadBefore, m.LoadAfter)
	w("| PostgreSQL connections at start | %s |\n\n", m.PGConnections)
	w("A load average above the CPU count before the run means other work shared the machine: the\n")
	w("interleaved read measurement and the side-by-side seed 000 runs are built to be fair under such\n")
	w("noise; the absolute rates are not.\n\n")

	for _, x := range r.Reruns {
		w("**Merged in since:** the %s phase, measured again on its own on %s in %s (`go run ./loadtest/bench -only %s`, %s;\n",
			strings.Join(x.Phases, ", "), x.Date, x.Elapsed, strings.Join(x.Phases, ","), params(x.Params))
		w("load average %s before, %s after; PostgreSQL connections at start: %s). Its figures, ratios and targets come\n",
			x.LoadBefore, x.LoadAfter, x.PGConnections)
		w("from that run, side by side within it; the other phases' from the run above.\n\n")
	}
	w("## Targets\n\n| target | wanted | measured | |\n|---|---|---|---|\n")
	for _, t := range r.Targets {
		w("| %s | %s | %s | **%s** |\n", t.Name, t.Target, t.Measured, t.Verdict)
	}
	w("\n")

	w("## Ratios\n\n| ratio | value |\n|---|---|\n")
	for _, x := range r.Ratios {
		w("| %s | %s |\n", x.Name, x.Text)
	}
	w("\n![latency percentiles per configuration](%s/bench-latency.svg)\n\n", img)
	w("![throughput per configuration](%s/bench-throughput.svg)\n\n", img)

	groups := []struct{ key, title, intro string }{
		{"baseline", "Baselines: the machine's ceilings", "What the hardware and the libraries do with no " +
			"product code: a bare `net/http` JSON handler, the same with one go-redis GET and with one pgx " +
			"primary-key SELECT (loadtest/baseline/), and pgbench running the minimal order transaction — insert " +
			"the order and decrement the stock conditionally, one transaction (loadtest/baseline/pgbench/order.sql)."},
		{"inventory", "The read path", "`GET /v1/products/{sku}` on 1,000 hot SKUs, measured by " +
			"loadtest/readbench in 2 s slices interleaved with the baselines above, so background load hits all " +
			"alike. Rate limiting is off for these (one client)."},
		{"orders", "Orders end to end", "`POST /v1/orders` through the whole saga (order → inventory reserve → " +
			"payment → provider → inventory commit → confirm + outbox; the relay and the notification workers run " +
			"meanwhile), patterns on. First the most the stack completes with back-to-back clients, then an open " +
			"load (arrivals at a fixed rate, whatever the latency) at 80% of that."},
		{"seed000", "Seed 000: patterns off vs on", "The same k6 mix (browse products 80% with If-None-Match " +
			"sometimes, place orders 15%, read orders 5%; every call with the access token of one of 100 customers, " +
			"a new simulated user every 20 requests) against two stacks " +
			"from the same binaries. **Off**: `INVENTORY_CACHE_ENABLED=false`, `ORDER_RATE_LIMIT=0`, " +
			"`INVENTORY_RATE_LIMIT=0`, and no queue between an order and its slow work: the clients reach order " +
			"through loadtest/syncnotify, a reverse proxy that holds each 201 until notification has made the " +
			"order's invoice and sent its e-mail over real SMTP (it polls `GET /v1/invoices?order_id=` and " +
			"`GET /v1/emails?order_id=` with the customer's token, every 2 ms backing off to 20 ms), so the " +
			"client waits for that work as it would if order did it inside the request. The work itself still " +
			"goes through the outbox, SQS and the workers, so off measures what waiting for it costs, not a " +
			"different code path; the proxy's hop and polls are in off's figures. **On**: the shipped " +
			"defaults, the client answered as soon as the order is confirmed. First back to back (peak), then " +
			"at the same open rate for both: half the off stack's peak."},
		{"breaker", "Payment provider outage", "Orders at 20/s; 8 s in, the provider goes down " +
			"(`PUT /admin/provider` outage) for 15 s, then is healed. `open` is the outage minus its first 2 s, " +
			"while the breaker counts failures; `after` starts at the heal, while the breaker is still open " +
			"(its delay, 5 s) and half-opens."},
	}
	for _, g := range groups {
		w("## %s\n\n%s\n\n", g.title, g.intro)
		w("| measurement | req/s | p50 ms | p95 ms | p99 ms | errors | load | note |\n|---|---:|---:|---:|---:|---:|---|---|\n")
		for _, x := range r.Measurements {
			if x.Group != g.key {
				continue
			}
			note := x.Note
			if x.Mean > 0 {
				note = fmt.Sprintf("mean %.2f ms; %s", x.Mean, note)
			}
			if x.Group == "seed000" {
				note = fmt.Sprintf("orders: %s/s, p50 %s, p95 %s, p99 %s ms; product p95 %s ms", rps(x.OrderRPS),
					ms(x.OrderP50), ms(x.OrderP95), ms(x.OrderP99), ms(x.ReadP95))
			}
			if x.Dropped > 0 {
				note += fmt.Sprintf(" (%d iterations dropped: the stack did not keep up)", x.Dropped)
			}
			w("| %s | %s | %s | %s | %s | %.2f%% | %s | %s |\n", x.Name, rps(x.RPS), ms(x.P50), ms(x.P95), ms(x.P99),
				100*x.ErrorRate, x.Tool, note)
		}
		w("\n")
	}
	r.trustMarkdown(&b)
	r.remoteMarkdown(&b)
	r.floorMarkdown(&b)
	if pg, ok := r.CPU["pgbench_order_tx"]; ok {
		if ord, ok := r.CPU["orders_peak"]; ok {
			cpus := float64(r.Machine.CPUs)
			w("## Where the CPU goes\n\n")
			w("CPU time (user + system, from /proc) of every process on the machine while the measurement ran,\n")
			w("divided by what it completed: %d pgbench transactions and %d orders. The load generator is\n", pg.Ops, ord.Ops)
			w("pgbench or k6. %d CPUs can give at most %.0f ms of CPU per second, so `%d / total` is the most\n", r.Machine.CPUs, 1000*cpus, r.Machine.CPUs)
			w("this machine can complete per second at that cost.\n\n")
			w("| process | ms per pgbench transaction | share | ms per order | share |\n|---|---:|---:|---:|---:|\n")
			roles := map[string]bool{}
			var order []string
			for _, sh := range append(append([]cpuShare{}, ord.Shares...), pg.Shares...) {
				if !roles[sh.Role] {
					roles[sh.Role] = true
					order = append(order, sh.Role)
				}
			}
			cell := func(sh cpuShare, ok bool) string {
				if !ok {
					return "– | –"
				}
				return fmt.Sprintf("%.3f | %.0f%%", sh.MsPer, 100*sh.Share)
			}
			for _, role := range order {
				a, okA := pg.share(role)
				b, okB := ord.share(role)
				w("| %s | %s | %s |\n", role, cell(a, okA), cell(b, okB))
			}
			w("| **total** | **%.3f** | | **%.3f** | |\n", pg.TotalMs, ord.TotalMs)
			w("| most per second at that cost | %.0f | | %.0f | |\n\n", 1000*cpus/pg.TotalMs, 1000*cpus/ord.TotalMs)
		}
	}
	r.historyMarkdown(&b, img)
	b.WriteString(changes)
	if len(r.Findings) > 0 {
		w("## Findings where a target was missed\n\n")
		for _, f := range r.Findings {
			w("- %s\n", f)
		}
		w("\n")
	}
	if len(r.Notes) > 0 {
		w("## Notes from this run\n\n")
		for _, n := range r.Notes {
			w("- %s\n", n)
		}
		w("\n")
	}
	w("## How it is measured\n\n")
	w("`make bench` runs `scripts/bench.sh`, which installs the pinned k6 (v1.8.1) into `bin/` when missing and\n")
	w("runs `go run ./loadtest/bench`. That program builds the services and baselines, creates scratch\n")
	w("databases, starts every process on free loopback ports (test/stack), runs the phases above under a\n")
	w("global deadline, and stops and drops everything at the end. Services log at `warn` and tracing is off\n")
	w("(`OTEL_SDK_DISABLED=true`) in every configuration alike; `make overhead` measures tracing's cost.\n")
	w("E-mails go to a maildev started for the run (real SMTP). The k6 scenarios themselves are in\n")
	w("loadtest/k6/ (`make loadtest SCENARIO=…`); the bench uses `bench.js` and `breaker.js`.\n")
	w("`go run ./loadtest/bench -render` rebuilds this page, the ratios, targets, findings and charts\n")
	w("from benchmarks.json without measuring again; `-only trust` (or any phase: pgbench, reads, seed000,\n")
	w("orders, floor, breaker, trust, remotedb) measures that phase again and merges it into benchmarks.json and\n")
	w("this page (the floor needs the orders and floor phases of one run). Only a full run is added to the history.\n")
	return b.Bytes()
}

// bar is one row of a chart: a label and one value per series.
type bar struct {
	label  string
	values []float64
}

func (r *report) charts() (latency, throughput []byte) {
	var lat, tput []bar
	for _, m := range r.Measurements {
		label := m.Name
		if m.P50 > 0 || m.P95 > 0 {
			lat = append(lat, bar{label, []float64{m.P50, m.P95, m.P99}})
		} else if m.Mean > 0 {
			lat = append(lat, bar{label + " (mean)", []float64{m.Mean, 0, 0}})
		}
		if m.RPS > 0 {
			tput = append(tput, bar{label, []float64{m.RPS}})
		}
	}
	latency = svgChart("Latency per configuration (ms, log scale)", []string{"p50", "p95", "p99"},
		[]string{"#4c78a8", "#f58518", "#e45756"}, lat, "ms")
	throughput = svgChart("Throughput per configuration (requests or orders per second, log scale)", []string{"per second"},
		[]string{"#54a24b"}, tput, "/s")
	return latency, throughput
}

// svgChart draws horizontal grouped bars on a log10 axis: latencies and
// rates here span four orders of magnitude.
func svgChart(title string, series, colors []string, bars []bar, unit string) []byte {
	const labelW, plotW, rowPad, barH = 330, 560, 10, 11
	rowH := rowPad + barH*len(series)
	top := 60
	height := top + rowH*len(bars) + 50
	width := labelW + plotW + 90
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, b := range bars {
		for _, v := range b.values {
			if v > 0 {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if math.IsInf(lo, 0) {
		lo, hi = 1, 10
	}
	minExp, maxExp := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if maxExp <= minExp {
		maxExp = minExp + 1
	}
	x := func(v float64) float64 {
		return labelW + plotW*(math.Log10(v)-minExp)/(maxExp-minExp)
	}
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n",
		width, height, width, height)
	w(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	w(`<text x="10" y="20" font-size="14" font-weight="bold">%s</text>`+"\n", esc(title))
	for i, s := range series {
		w(`<rect x="%d" y="30" width="12" height="10" fill="%s"/><text x="%d" y="39">%s</text>`+"\n",
			labelW+i*90, colors[i], labelW+i*90+16, esc(s))
	}
	for e := minExp; e <= maxExp; e++ {
		gx := x(math.Pow(10, e))
		w(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`+"\n", gx, top-5, gx, height-40)
		w(`<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%s%s</text>`+"\n", gx, height-25, tick(math.Pow(10, e)), unit)
	}
	for i, row := range bars {
		y := top + i*rowH
		w(`<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", labelW-8, y+rowH/2+3, esc(row.label))
		for j, v := range row.values {
			if v <= 0 {
				continue
			}
			by := y + j*barH
			w(`<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", labelW, by, math.Max(1, x(v)-labelW), barH-1, colors[j])
			w(`<text x="%.1f" y="%d" fill="#333" font-size="9">%s</text>`+"\n", x(v)+3, by+barH-2, num(v))
		}
	}
	w("</svg>\n")
	return b.Bytes()
}

func tick(v float64) string {
	if v < 1 {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

func num(v float64) string {
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 1000:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
