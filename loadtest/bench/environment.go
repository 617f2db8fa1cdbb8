package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/pkg/authtest"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/smtptest"
	"github.com/orderflow/orderflow/test/stack"
)

// loadCustomers is how many customers the k6 load signs in: its simulated
// users take turns with their tokens, so the rate limiters (which key on
// the token's subject) run on every request without throttling the
// measurement, as in a shop with many customers.
const loadCustomers = 100

// environment is everything the bench started: binaries, scratch databases,
// helper processes (fauxqs, maildev, baselines, Ory Hydra) and stacks.
// close undoes it.
type environment struct {
	o      options
	dir    string // binaries and k6 summaries
	logDir string
	// sqs is the endpoint the stacks use: loadtest/sqscount, counting the
	// calls, in front of sqsDirect, the emulator (sqsCounter is its base
	// URL, for the counts).
	sqs, sqsDirect, sqsCounter string
	smtp                       string
	// pg reads PostgreSQL's statistics for the floor's SQL counts.
	pg pgSource
	// hydra issues every token of the run; tokensFile holds the load's
	// customers' access tokens, one per line (k6's ORDERFLOW_TOKENS_FILE),
	// and adminToken is an orderflow.admin token for the breaker phase
	// (also in adminTokenFile, for -serve).
	hydra          *authtest.Hydra
	tokensFile     string
	adminToken     string
	adminTokenFile string
	// customers are the load's customer ids, tokens their access tokens.
	customers []string
	tokens    map[string]string

	on, off *running // the shared stacks, once started

	mu      sync.Mutex
	dbs     []string
	procs   []*exec.Cmd
	roles   map[int]string // helpers named by pid in the CPU profiles
	stacks  []*stack.Stack
	closers []func()
}

// gatewaySource is the address the bench's gateway connects to the
// services from, and the one the services believe X-Forwarded-For from
// (TRUSTED_PROXIES), as in make dev.
const gatewaySource = "127.0.0.2"

// config is one stack configuration: what it adds to each service's
// environment.
type config map[string][]string

// patternsOn is Orderflow as shipped: Redis cache, rate limits, e-mails and
// invoices on the queues.
var patternsOn = config{}

// patternsOff is seed 000's "before": no cache, no rate limit (real
// configuration switches), and no queue between the order and its slow
// work: the off stacks' clients reach order through loadtest/syncnotify,
// which holds every 201 until notification has made the invoice and sent
// the e-mail (withSyncNotify), so the client waits for them as it would if
// order made them inside the request.
var patternsOff = config{
	"inventory": {"INVENTORY_CACHE_ENABLED=false", "INVENTORY_RATE_LIMIT=0"},
	"order":     {"ORDER_RATE_LIMIT=0"},
}

// readCached is an inventory alone with its cache and no rate limit (the
// read benchmark is one client).
var readCached = config{"inventory": {"INVENTORY_RATE_LIMIT=0"}}

func newEnvironment(ctx context.Context, o options) (*environment, error) {
	dir, err := os.MkdirTemp("", "orderflow-bench")
	if err != nil {
		return nil, err
	}
	e := &environment{o: o, dir: dir, logDir: filepath.Join(dir, "logs")}
	if o.keepLogs != "" {
		e.logDir = o.keepLogs
	}
	if err := os.MkdirAll(e.logDir, 0o755); err != nil {
		e.close()
		return nil, err
	}
	if err := e.setUp(ctx); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (e *environment) setUp(ctx context.Context) error {
	if _, err := os.Stat(e.o.k6); err != nil {
		return fmt.Errorf("k6 not found at %s (scripts/bench.sh installs it): %w", e.o.k6, err)
	}
	say("building the services, the baselines and readbench")
	if err := stack.Build(e.dir); err != nil {
		return err
	}
	if err := e.command(ctx, filepath.Join(e.logDir, "build.log"), "go", "build", "-o", e.dir+"/",
		"./loadtest/baseline/httpjson", "./loadtest/baseline/redisget", "./loadtest/baseline/pgxget",
		"./loadtest/baseline/fixedjson", "./loadtest/baseline/floor", "./loadtest/readbench",
		"./loadtest/syncnotify", "./loadtest/sqscount"); err != nil {
		return fmt.Errorf("build the baselines (log %s): %w", filepath.Join(e.logDir, "build.log"), err)
	}
	// Toxiproxy, for the remote-database profile: the module's own pinned
	// tool (go.mod), built like the rest.
	if err := e.command(ctx, filepath.Join(e.logDir, "build-toxiproxy.log"), "go", "build", "-o",
		filepath.Join(e.dir, toxiproxyBinary), "github.com/Shopify/toxiproxy/v2/cmd/server"); err != nil {
		return fmt.Errorf("build Toxiproxy (log %s): %w", filepath.Join(e.logDir, "build-toxiproxy.log"), err)
	}

	e.sqs = e.o.sqs
	if e.sqs == "" {
		if portOpen("127.0.0.1:4566") {
			e.sqs = "http://127.0.0.1:4566"
		} else {
			p, err := stack.FreePort()
			if err != nil {
				return err
			}
			say("starting fauxqs (SQS) on 127.0.0.1:%d", p)
			if err := e.background("fauxqs", []string{fmt.Sprintf("FAUXQS_PORT=%d", p), "FAUXQS_LOGGER=false"},
				"node", "tools/node_modules/fauxqs/dist/cli.js"); err != nil {
				return fmt.Errorf("start fauxqs (run make deps once to install it): %w", err)
			}
			e.sqs = fmt.Sprintf("http://127.0.0.1:%d", p)
			if err := waitPort(ctx, fmt.Sprintf("127.0.0.1:%d", p), 30*time.Second); err != nil {
				return fmt.Errorf("fauxqs: %w", err)
			}
		}
	}
	e.sqsDirect = e.sqs
	counter, err := e.baseline(ctx, "sqscount", "SQSCOUNT_UPSTREAM="+e.sqsDirect)
	if err != nil {
		return fmt.Errorf("start the SQS call counter: %w", err)
	}
	e.sqs, e.sqsCounter = counter, counter
	if e.pg, err = e.newPGSource(ctx); err != nil {
		return err
	}
	say("SQL counts from %s", e.pg.name())
	if e.pg.note != "" {
		say("%s", e.pg.note)
	}

	if err := e.startHydra(ctx); err != nil {
		return err
	}

	e.smtp = e.o.smtp
	if e.smtp == "" {
		if _, err := os.Stat("tools/node_modules/maildev/dist/bin/maildev.js"); err == nil {
			smtpPort, err1 := stack.FreePort()
			webPort, err2 := stack.FreePort()
			if err1 != nil || err2 != nil {
				return fmt.Errorf("free ports: %v %v", err1, err2)
			}
			say("starting maildev (SMTP) on 127.0.0.1:%d", smtpPort)
			if err := e.background("maildev", nil, "node", "tools/node_modules/maildev/dist/bin/maildev.js",
				"--ip", "127.0.0.1", "--smtp", fmt.Sprint(smtpPort), "--web-ip", "127.0.0.1", "--web", fmt.Sprint(webPort)); err != nil {
				return err
			}
			e.smtp = fmt.Sprintf("127.0.0.1:%d", smtpPort)
			if err := waitPort(ctx, e.smtp, 30*time.Second); err != nil {
				return fmt.Errorf("maildev: %w", err)
			}
		} else {
			sink, err := smtptest.NewSink()
			if err != nil {
				return err
			}
			e.closers = append(e.closers, sink.Close)
			e.smtp = sink.Addr()
			say("maildev is not installed (make deps): e-mails go to an in-process SMTP sink")
		}
	}
	return nil
}

// startHydra starts the run's Ory Hydra (pkg/authtest, on its own scratch
// database of the -postgres server) and signs in the load's customers and
// the admin client. k6 gets the tokens once, at the start of each phase,
// and the run lasts up to -deadline (20 min): so this Hydra's access
// tokens live 2 h instead of 15 min, and nothing has to refresh them.
func (e *environment) startHydra(ctx context.Context) error {
	if os.Getenv("TEST_DATABASE_URL") == "" { // where authtest creates Hydra's database
		os.Setenv("TEST_DATABASE_URL", dbURL(e.o.pgURL, "postgres"))
	}
	log, err := os.Create(filepath.Join(e.logDir, "hydra.log"))
	if err != nil {
		return err
	}
	e.closers = append(e.closers, func() { log.Close() })
	say("starting Ory Hydra and signing in %d customers", loadCustomers)
	h, err := authtest.StartProcess(ctx, authtest.Options{AccessTokenTTL: 2 * time.Hour, Log: log})
	if err != nil {
		return fmt.Errorf("start Ory Hydra: %w", err)
	}
	e.hydra = h
	var ids []string
	for i := range loadCustomers {
		ids = append(ids, fmt.Sprintf("cus_k6_%d", i))
	}
	tokens, err := stack.CustomerTokens(ctx, h, ids)
	if err != nil {
		return err
	}
	e.customers, e.tokens = ids, tokens
	var b strings.Builder
	for _, id := range ids {
		b.WriteString(tokens[id] + "\n")
	}
	e.tokensFile = filepath.Join(e.dir, "tokens.txt")
	if err := os.WriteFile(e.tokensFile, []byte(b.String()), 0o600); err != nil {
		return err
	}
	if e.adminToken, err = h.AdminToken(ctx); err != nil {
		return err
	}
	e.adminTokenFile = filepath.Join(e.dir, "admin-token.txt")
	return os.WriteFile(e.adminTokenFile, []byte(e.adminToken), 0o600)
}

// k6Auth are the k6 variables that carry the tokens (loadtest/k6/lib.js).
func (e *environment) k6Auth(vars map[string]string) map[string]string {
	vars["ORDERFLOW_TOKENS_FILE"] = e.tokensFile
	vars["ORDERFLOW_ADMIN_TOKEN"] = e.adminToken
	return vars
}

// command runs name with args to completion, its output in logPath.
func (e *environment) command(ctx context.Context, logPath, name string, args ...string) error {
	return e.commandEnv(ctx, nil, logPath, name, args...)
}

// commandEnv is command with env added to the bench's environment.
func (e *environment) commandEnv(ctx context.Context, env []string, logPath, name string, args ...string) error {
	f, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, name, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.WaitDelay = 5 * time.Second
	return cmd.Run()
}

// background starts a helper process that lives until close.
func (e *environment) background(name string, env []string, cmdName string, args ...string) error {
	_, err := e.startBackground(name, env, cmdName, args...)
	return err
}

// startBackground is background, returning the process.
func (e *environment) startBackground(name string, env []string, cmdName string, args ...string) (*exec.Cmd, error) {
	f, err := os.Create(filepath.Join(e.logDir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(cmdName, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	e.mu.Lock()
	e.procs = append(e.procs, cmd)
	e.closers = append(e.closers, func() { f.Close() })
	e.mu.Unlock()
	return cmd, nil
}

// nameProcess gives pid a role of its own in the CPU profiles.
func (e *environment) nameProcess(pid int, role string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.roles == nil {
		e.roles = map[int]string{}
	}
	e.roles[pid] = role
}

// procNames is how the CPU profiles name this run's processes.
func (e *environment) procNames() procNames {
	e.mu.Lock()
	defer e.mu.Unlock()
	return procNames{binDir: e.dir, pids: maps.Clone(e.roles)}
}

// baseline starts one of the baseline servers (or another of the bench's
// helper programs: sqscount, syncnotify) on a free port and returns its
// base URL once it accepts connections.
func (e *environment) baseline(ctx context.Context, name string, env ...string) (string, error) {
	p, err := stack.FreePort()
	if err != nil {
		return "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", p)
	listen := []string{"BASELINE_ADDR=" + addr, "SQSCOUNT_ADDR=" + addr, "SYNC_ADDR=" + addr}
	if err := e.background(name+"-"+strconv.Itoa(p), append(listen, env...), filepath.Join(e.dir, name)); err != nil {
		return "", err
	}
	if err := waitPort(ctx, addr, 60*time.Second); err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return "http://" + addr, nil
}

// database creates a scratch database and returns its URL; close drops it.
func (e *environment) database(ctx context.Context, purpose string) (string, error) {
	name := "bench_" + purpose + "_" + randomHex()
	u := dbURL(e.o.pgURL, name)
	if err := postgres.CreateDatabase(ctx, u); err != nil {
		return "", err
	}
	e.mu.Lock()
	e.dbs = append(e.dbs, name)
	e.mu.Unlock()
	return u, nil
}

// running is one started Orderflow stack, by base URL. order is where its
// clients send orders: orderDirect, or for the patterns-off stacks the
// syncnotify proxy in front of it.
type running struct {
	order, orderDirect, inventory, payment, notification string
	inventoryDB                                          string
	// databases names each service's database on the server (service →
	// name), provider's ledger included, for the floor's SQL counts.
	databases map[string]string
	// debug is each service's pprof listener, with -pprof only.
	debug map[string]string
	parts []*stack.Stack
}

// stop stops a stack before the end of the run, to free its connections.
func (e *environment) stop(r running) {
	for i := len(r.parts) - 1; i >= 0; i-- {
		if err := r.parts[i].Close(); err != nil {
			fmt.Fprintln(os.Stderr, "stop stack:", err)
		}
		e.mu.Lock()
		for j, s := range e.stacks {
			if s == r.parts[i] {
				e.stacks = append(e.stacks[:j], e.stacks[j+1:]...)
				break
			}
		}
		e.mu.Unlock()
	}
}

// stack starts the services with cfg, and the payment provider, as one
// test/stack on loopback. only, when set, starts just that service (with its
// database).
func (e *environment) stack(ctx context.Context, name string, cfg config, only string) (running, error) {
	return e.stackVia(ctx, name, cfg, only, "")
}

// stackVia is stack with the services' databases reached through dbAddr
// (host:port of a proxy in front of the -postgres server; "" for the server
// itself). The databases are created and dropped on the server directly.
func (e *environment) stackVia(ctx context.Context, name string, cfg config, only, dbAddr string) (running, error) {
	dbs := map[string]string{}
	names := map[string]string{}
	svcs := []string{"order", "inventory", "payment", "notification", "provider"}
	if only != "" {
		svcs = []string{only}
	}
	for _, svc := range svcs {
		u, err := e.database(ctx, name+"_"+svc)
		if err != nil {
			return running{}, err
		}
		names[svc] = dbName(u)
		dbs[svc] = viaAddr(u, dbAddr)
	}
	logDir := filepath.Join(e.logDir, name)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return running{}, err
	}
	serviceEnv := map[string][]string{}
	for svc, vars := range cfg {
		serviceEnv[svc] = append(serviceEnv[svc], vars...)
	}
	serviceEnv["inventory"] = append([]string{"INVENTORY_SEED_PRODUCTS=10000"}, serviceEnv["inventory"]...)
	debug, err := e.debugEnv(serviceEnv)
	if err != nil {
		return running{}, err
	}
	sc := stack.Config{
		BinDir: e.dir, LogDir: logDir, Databases: dbs, SQSEndpoint: e.sqs, SMTPAddr: e.smtp, Hydra: e.hydra,
		// Request logs at info would cost every configuration alike and
		// fill the disk; warnings and errors are kept.
		// The pools are small: PostgreSQL's max_connections is shared by
		// every stack of the run (and whatever else runs on the machine),
		// and on a few cores more connections only queue in the server.
		// TRUSTED_PROXIES: the trust phase's gateway (trust.go) connects
		// from gatewaySource, and the services read the client address
		// from its X-Forwarded-For as they do behind make dev's; every
		// other caller connects from 127.0.0.1.
		Env: []string{"LOG_LEVEL=warn", "OTEL_SDK_DISABLED=true", "TRUSTED_PROXIES=" + gatewaySource,
			"ORDER_DB_MAX_CONNS=" + e.dbConns(), "INVENTORY_DB_MAX_CONNS=" + e.dbConns(),
			"PAYMENT_DB_MAX_CONNS=" + e.dbConns(), "NOTIFICATION_DB_MAX_CONNS=" + e.dbConns()},
		ServiceEnv: serviceEnv,
	}
	if e.o.serviceEnv != "" {
		sc.Env = append(sc.Env, strings.Split(e.o.serviceEnv, ",")...)
	}
	if only != "" {
		sc.Only = []string{only}
	}
	say("starting stack %s", name)
	a, err := stack.Start(sc)
	if err != nil {
		return running{}, fmt.Errorf("start stack %s: %w", name, err)
	}
	e.addStack(a)
	r := running{inventory: a.URL("inventory", ""), inventoryDB: dbs["inventory"], databases: names,
		debug: debug, parts: []*stack.Stack{a}}
	if only != "" {
		return r, nil
	}
	r.payment, r.notification = a.URL("payment", ""), a.URL("notification", "")
	r.order = a.URL("order", "")
	r.orderDirect = r.order
	return r, nil
}

// withSyncNotify puts loadtest/syncnotify in front of r's order: r's
// clients then wait for each order's invoice and e-mail (patternsOff).
func (e *environment) withSyncNotify(ctx context.Context, r running) (running, error) {
	u, err := e.baseline(ctx, "syncnotify", "SYNC_ORDER_URL="+r.orderDirect, "SYNC_NOTIFICATION_URL="+r.notification)
	if err != nil {
		return r, fmt.Errorf("start syncnotify: %w", err)
	}
	r.order = u
	return r, nil
}

// dbName is the database of a URL.
func dbName(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(p.Path, "/")
}

// viaAddr is u with its host:port replaced by addr ("" keeps it).
func viaAddr(u, addr string) string {
	if addr == "" {
		return u
	}
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	p.Host = addr
	return p.String()
}

func (e *environment) dbConns() string { return fmt.Sprint(e.o.dbConns) }

func (e *environment) addStack(s *stack.Stack) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stacks = append(e.stacks, s)
}

// close stops everything the bench started, newest first, and drops the
// scratch databases.
func (e *environment) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := len(e.stacks) - 1; i >= 0; i-- {
		if err := e.stacks[i].Close(); err != nil {
			fmt.Fprintln(os.Stderr, "stop stack:", err)
		}
	}
	if e.hydra != nil {
		e.hydra.Close() // and drops its database
	}
	for i := len(e.procs) - 1; i >= 0; i-- {
		terminate(e.procs[i])
	}
	for _, c := range e.closers {
		c()
	}
	dropDatabases(e.o.pgURL, e.dbs)
	os.RemoveAll(e.dir) // binaries, summaries and (without -logs) the logs
}

func dropDatabases(server string, names []string) {
	if len(names) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL(server, "postgres"))
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

func portOpen(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func waitPort(ctx context.Context, addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for !portOpen(addr) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("nothing listens on %s after %s", addr, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

func randomHex() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
