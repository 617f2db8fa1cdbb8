// Command bench is `make bench`: it measures on this machine, in one run,
// what Orderflow's patterns are worth and how close the services come to
// the machine's own ceilings, and writes docs/benchmarks.md,
// docs/benchmarks.json and the charts in docs/img/.
//
// It starts everything it measures itself, on free loopback ports with fresh
// databases (test/stack), Ory Hydra included (pkg/authtest: every call of
// the load carries a real access token of one of 100 customers), and stops
// and drops it all at the end:
//
//   - baselines: a bare net/http JSON handler (loadtest/baseline/httpjson),
//     the same with one go-redis GET (redisget) and with one pgx primary-key
//     SELECT (pgxget), and pgbench running the minimal order transaction
//     (loadtest/baseline/pgbench) on a scratch database;
//   - the read path: inventory's product GET uncached and cached, measured
//     with the baselines by loadtest/readbench in interleaved slices;
//   - orders end to end: the most orders/s the whole stack completes (k6,
//     closed model), then the latency at 80% of that rate (open model);
//   - the floor of one order (floor.go): the work one order does, counted
//     around the orders peak (HTTP hops, SQL statements and commits, SQS
//     calls, SMTP deliveries), times what the bare version of each costs
//     (loadtest/baseline/floor), against the CPU per order;
//   - seed 000: the same k6 traffic mix against the stack with the patterns
//     switched off (INVENTORY_CACHE_ENABLED=false, *_RATE_LIMIT=0, and the
//     client waiting for each order's invoice and e-mail through
//     loadtest/syncnotify) and on;
//   - a payment provider outage: the order p99 once the breaker is open;
//   - the cost of trust (trust.go): product reads, order reads and orders
//     through the TLS gateway (HAProxy) vs straight to the services, and
//     with the token decision cache vs AUTH_CACHE_TTL=0, side by side, with
//     the CPU per request of every process; and its floor, a bare handler
//     replaying inventory's cached answer, direct and behind the same gateway;
//   - the remote-database profile (remotedb.go): reads, orders and seed 000
//     again with Toxiproxy adding 1 ms each way in front of PostgreSQL.
//
// A full run appends its headline figures, with the commit and the machine,
// to docs/bench-history.jsonl (history.go) and charts them in
// docs/img/bench-history.svg; -compare A -with B prints two of its runs
// side by side (make bench-compare).
//
// Every phase is bounded in time and the whole run has a deadline (-deadline).
// -only runs some phases alone (go run ./loadtest/bench -only trust
// -duration 10s) and merges their figures into the report in -json, if
// there is one: the other phases' figures are kept, and the page says which
// phases were measured again, when.
// With -serve it only starts one patterns-on stack, prints its URLs and waits
// for Ctrl-C (for trying the k6 scenarios without make dev).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	k6          string
	pgURL       string
	sqs         string
	smtp        string
	mdOut       string
	jsonOut     string
	imgDir      string
	dur         time.Duration
	readDur     time.Duration
	vus         int
	dbConns     int
	deadline    time.Duration
	serve       bool
	render      bool
	keepLogs    string
	loadAverage string
	only        string
	trustRounds int
	floorDur    time.Duration
	history     string
	pprof       string
	serviceEnv  string
}

// phase is one part of the run. key names it for -only, and prefix is
// how its measurement and CPU profile keys begin (what a merge replaces);
// housekeeping steps have neither.
type phase struct {
	key, name, prefix string
	fn                func(context.Context, *environment, *report) error
}

var phases = []phase{
	{"pgbench", "pgbench order transaction", "pgbench_", benchPgbench},
	{"reads", "read path and HTTP baselines", "read_", benchReads},
	{"seed000", "seed 000: patterns off vs on", "seed_", benchSeed000},
	{"", "stopping the patterns-off stack", "", stopOff},
	{"orders", "orders end to end", "orders_", benchOrders},
	{"floor", "the floor of one order: bare units", "floor_", benchFloor},
	{"breaker", "provider outage", "breaker_", benchBreaker},
	{"", "stopping the patterns-on stack", "", stopOn},
	{"trust", "the cost of trust", "trust_", benchTrust},
	{"remotedb", "remote database (Toxiproxy, +1 ms each way)", "remote_", benchRemoteDB},
}

// selectPhases returns the phases -only names (all when it is empty),
// housekeeping included.
func selectPhases(only string) ([]phase, error) {
	if only == "" {
		return phases, nil
	}
	want := map[string]bool{}
	for _, k := range strings.Split(only, ",") {
		want[strings.TrimSpace(k)] = true
	}
	var out []phase
	var known []string
	for _, p := range phases {
		if p.key != "" {
			known = append(known, p.key)
		}
		if p.key == "" || want[p.key] {
			out = append(out, p)
			delete(want, p.key)
		}
	}
	for k := range want {
		return nil, fmt.Errorf("-only: no phase %q (phases: %s)", k, strings.Join(known, ", "))
	}
	return out, nil
}

func run() error {
	var o options
	flag.StringVar(&o.k6, "k6", "bin/k6", "k6 binary")
	flag.StringVar(&o.pgURL, "postgres", "postgres://postgres@127.0.0.1:5432", "PostgreSQL server (scratch databases are created and dropped)")
	flag.StringVar(&o.sqs, "sqs", "", "SQS endpoint (default: 127.0.0.1:4566 when it answers, else a fauxqs started on a free port)")
	flag.StringVar(&o.smtp, "smtp", "", "SMTP server (default: maildev started on a free port, else an in-process sink)")
	flag.StringVar(&o.mdOut, "md", "docs/benchmarks.md", "report")
	flag.StringVar(&o.jsonOut, "json", "docs/benchmarks.json", "figures as JSON")
	flag.StringVar(&o.imgDir, "img", "docs/img", "charts")
	flag.DurationVar(&o.dur, "duration", 20*time.Second, "length of each k6 measurement")
	flag.DurationVar(&o.readDur, "read-duration", 10*time.Second, "measured time per read target")
	flag.IntVar(&o.vus, "vus", 16, "concurrent clients of the closed-model measurements (and pgbench)")
	flag.IntVar(&o.dbConns, "db-conns", 6, "connection pool size of each service (and of the pgx baseline)")
	flag.DurationVar(&o.deadline, "deadline", 20*time.Minute, "the whole run stops after this")
	flag.DurationVar(&o.floorDur, "floor-duration", 4*time.Second, "length of each bare unit of the floor")
	flag.StringVar(&o.history, "history", "docs/bench-history.jsonl", "runs on record: a full run appends to it (\"\": none)")
	compareA := flag.String("compare", "", "measure nothing: print run A of -history (commit prefix or line number; \"\" with -with: the one before B) beside -with")
	compareB := flag.String("with", "", "with -compare: run B (default: the last)")
	compare := false
	backfill := flag.Bool("history-backfill", false, "measure nothing: add to -history the runs of every committed docs/benchmarks.json (git log) it lacks")
	flag.BoolVar(&o.serve, "serve", false, "start one patterns-on stack, print its URLs, wait for Ctrl-C")
	flag.BoolVar(&o.render, "render", false, "measure nothing: rewrite the report, ratios, targets and charts from the -json file")
	flag.StringVar(&o.keepLogs, "logs", "", "keep the services' logs in this directory")
	flag.StringVar(&o.only, "only", "", "run only these phases (comma-separated: pgbench, reads, seed000, orders, floor, breaker, trust, remotedb) and merge them into the -json report")
	flag.StringVar(&o.serviceEnv, "service-env", "", "comma-separated K=V added to every service's environment (to compare settings such as GOGC side by side)")
	flag.StringVar(&o.pprof, "pprof", "", "write a CPU profile of each Go service during the orders peak into this directory (DEBUG_ADDR)")
	flag.IntVar(&o.trustRounds, "trust-rounds", 2, "alternating k6 rounds per configuration in the trust phase (each -duration/rounds)")
	flag.Parse()
	flag.Visit(func(f *flag.Flag) { compare = compare || f.Name == "compare" || f.Name == "with" })

	switch {
	case compare:
		return compareRuns(os.Stdout, o.history, *compareA, *compareB)
	case *backfill:
		return backfillHistory(o)
	case o.render:
		return render(o)
	}
	selected, err := selectPhases(o.only)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if !o.serve {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.deadline)
		defer cancel()
	}
	o.loadAverage = loadAverage()

	env, err := newEnvironment(ctx, o)
	if err != nil {
		return err
	}
	defer env.close()

	if o.serve {
		s, err := env.stack(ctx, "serve", patternsOn, "")
		if err != nil {
			return err
		}
		fmt.Printf("export ORDER_URL=%s INVENTORY_URL=%s PAYMENT_URL=%s NOTIFICATION_URL=%s\n",
			s.order, s.inventory, s.payment, s.notification)
		fmt.Printf("export ORDERFLOW_TOKENS_FILE=%s ORDERFLOW_ADMIN_TOKEN=$(cat %s)\n", env.tokensFile, env.adminTokenFile)
		fmt.Printf("(tokens of %d customers and of orderflow-admin, issued by %s; they live 2 h)\n", loadCustomers, env.hydra.Issuer)
		fmt.Println("serving; Ctrl-C stops it")
		<-ctx.Done()
		return nil
	}

	start := time.Now()
	params := map[string]string{
		"duration": o.dur.String(), "read_duration": o.readDur.String(), "vus": fmt.Sprint(o.vus),
		"trust_rounds": fmt.Sprint(o.trustRounds),
	}
	r := &report{Machine: describeMachine(o.loadAverage), Params: params}
	r.Machine.PGConnections = pgConnections(ctx, o.pgURL)
	var merged *rerun
	if o.only != "" {
		base, ok, err := mergeBase(o.jsonOut, selected)
		if err != nil {
			return err
		}
		if ok {
			merged = &rerun{Date: r.Machine.Date, LoadBefore: o.loadAverage, Params: params,
				PGConnections: r.Machine.PGConnections}
			for _, p := range selected {
				if p.key != "" {
					merged.Phases = append(merged.Phases, p.key)
				}
			}
			r = base
			say("merging phases %s into the report of %s (%s)", strings.Join(merged.Phases, ", "), r.Machine.Date, o.jsonOut)
		} else {
			r.Notes = append(r.Notes, fmt.Sprintf("only the phases %q were run (-only)", o.only))
		}
	}
	for _, p := range selected {
		if p.key == "" && o.only != "" { // housekeeping, quietly
			_ = p.fn(ctx, env, r)
			continue
		}
		if ctx.Err() != nil {
			r.Notes = append(r.Notes, fmt.Sprintf("phase %q not run: %v", p.name, ctx.Err()))
			continue
		}
		say("%s", p.name)
		t := time.Now()
		if err := p.fn(ctx, env, r); err != nil {
			say("phase %s failed: %v", p.name, err)
			r.Notes = append(r.Notes, fmt.Sprintf("phase %q failed: %v", p.name, err))
		}
		say("%s: %s", p.name, time.Since(t).Round(time.Second))
	}
	if merged != nil {
		merged.LoadAfter = loadAverage()
		merged.Elapsed = time.Since(start).Round(time.Second).String()
		r.addRerun(*merged)
	} else {
		r.Machine.LoadAfter = loadAverage()
		r.Elapsed = time.Since(start).Round(time.Second).String()
	}
	if err := r.loadHistory(o.history); err != nil {
		return err
	}
	r.evaluate()
	if o.only == "" && o.history != "" {
		commit, dirty := commitOf(".")
		entry := r.historyEntry(commit, dirty)
		if err := appendHistory(o.history, entry); err != nil {
			return err
		}
		r.history = append(r.history, entry)
		say("appended this run to %s", o.history)
	}
	if err := r.write(o); err != nil {
		return err
	}
	say("wrote %s, %s and %s/ in %s", o.mdOut, o.jsonOut, o.imgDir, time.Since(start).Round(time.Second))
	for _, t := range r.Targets {
		fmt.Printf("  %-60s %-22s %s\n", t.Name, t.Measured, t.Verdict)
	}
	return nil
}

// mergeBase reads the report in path for a run of some phases only: it
// returns it without those phases' figures, and ok false when there is no
// report to merge into.
func mergeBase(path string, selected []phase) (*report, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, false, fmt.Errorf("%s: %w", path, err)
	}
	replaced := func(key string) bool {
		for _, p := range selected {
			if p.prefix != "" && strings.HasPrefix(key, p.prefix) {
				return true
			}
		}
		return false
	}
	var kept []measurement
	for _, m := range r.Measurements {
		if !replaced(m.Key) {
			kept = append(kept, m)
		}
	}
	r.Measurements = kept
	for k := range r.CPU {
		if replaced(k) {
			delete(r.CPU, k)
		}
	}
	for k := range r.Counts {
		if replaced(k) {
			delete(r.Counts, k)
		}
	}
	var notes []string
	for _, n := range r.Notes {
		stale := false
		for _, p := range selected {
			stale = stale || (p.key != "" && strings.HasPrefix(n, fmt.Sprintf("phase %q", p.name)))
		}
		if !stale {
			notes = append(notes, n)
		}
	}
	r.Notes = notes
	r.Ratios, r.Targets, r.Findings = nil, nil, nil
	return &r, true, nil
}

// render rebuilds the report from the figures of an earlier run: the
// measurements are kept, everything derived from them is computed again.
func render(o options) error {
	b, err := os.ReadFile(o.jsonOut)
	if err != nil {
		return err
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("%s: %w", o.jsonOut, err)
	}
	r.Ratios, r.Targets, r.Findings = nil, nil, nil
	if err := r.loadHistory(o.history); err != nil {
		return err
	}
	r.evaluate()
	if o.history != "" { // the page charts every run on record, this one too
		if r.history, err = readHistory(o.history); err != nil {
			return err
		}
	}
	if err := r.write(o); err != nil {
		return err
	}
	say("rewrote %s, %s and %s/ from the figures of %s", o.mdOut, o.jsonOut, o.imgDir, o.jsonOut)
	return nil
}

func say(format string, args ...any) {
	fmt.Printf("\033[1m==> "+format+"\033[0m\n", args...)
}

// loadAverage is /proc/loadavg's first three fields.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// k6Summary is the part of k6's JSON summary the bench reads.
type k6Summary struct {
	Metrics map[string]struct {
		Values map[string]float64 `json:"values"`
	} `json:"metrics"`
}

func (s k6Summary) value(metric, stat string) float64 {
	return s.Metrics[metric].Values[stat]
}

// runK6 runs script with env and returns its summary. A failed threshold
// (exit code 99) is not an error: the bench judges the figures.
func (e *environment) runK6(ctx context.Context, name, script string, vars map[string]string, limit time.Duration) (k6Summary, error) {
	return e.runK6Env(ctx, nil, name, script, vars, limit)
}

// runK6Env is runK6 with env added to k6's process environment
// (SSL_CERT_FILE: the CA it checks the gateway's certificate against).
func (e *environment) runK6Env(ctx context.Context, env []string, name, script string, vars map[string]string, limit time.Duration) (k6Summary, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	vars["RESULTS_DIR"] = e.dir
	vars["SUMMARY_NAME"] = name
	args := []string{"run", "--quiet", "--no-color"}
	for k, v := range vars {
		args = append(args, "-e", k+"="+v)
	}
	args = append(args, script)
	logPath := filepath.Join(e.logDir, "k6-"+name+".log")
	if err := e.commandEnv(ctx, env, logPath, e.o.k6, args...); err != nil {
		var exit interface{ ExitCode() int }
		if !errors.As(err, &exit) || exit.ExitCode() != 99 {
			return k6Summary{}, fmt.Errorf("k6 %s: %w (log %s)", name, err, logPath)
		}
	}
	b, err := os.ReadFile(filepath.Join(e.dir, name+".json"))
	if err != nil {
		return k6Summary{}, fmt.Errorf("k6 %s wrote no summary: %w", name, err)
	}
	var s k6Summary
	if err := json.Unmarshal(b, &s); err != nil {
		return k6Summary{}, fmt.Errorf("k6 %s summary: %w", name, err)
	}
	if out, err := os.ReadFile(logPath); err == nil {
		fmt.Print(indent(string(out)))
	}
	return s, nil
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		b.WriteString("    " + l + "\n")
	}
	return b.String()
}

// dbURL is the URL of database name on the server.
func dbURL(server, name string) string {
	u, err := url.Parse(server)
	if err != nil {
		return server + "/" + name
	}
	u.Path = "/" + name
	q := u.Query()
	if q.Get("sslmode") == "" {
		q.Set("sslmode", "disable")
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// pgConnections reports max_connections and the connections in use: the
// bench's stacks need about 5 × -db-conns each, and other work on the same
// server competes for the rest.
func pgConnections(ctx context.Context, server string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL(server, "postgres"))
	if err != nil {
		return "unknown: " + err.Error()
	}
	defer conn.Close(ctx)
	var limit, used int
	const q = `SELECT current_setting('max_connections')::int, (SELECT count(*) FROM pg_stat_activity)`
	if err := conn.QueryRow(ctx, q).Scan(&limit, &used); err != nil {
		return "unknown: " + err.Error()
	}
	return fmt.Sprintf("%d of max_connections %d in use", used, limit)
}
