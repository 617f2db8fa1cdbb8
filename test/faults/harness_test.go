// Package faults is Orderflow's fault suite: it builds the five processes,
// starts them natively on fresh databases behind Toxiproxy proxies (one per
// service's Postgres database, Redis, SQS, and order's calls to payment),
// drives a steady, bounded order load over loopback, injects one fault at a
// time (a toxic, a disabled proxy, a SIGKILL, a provider setting), heals it,
// and checks the system's invariants against the databases after each one,
// money conservation included. Every call carries a real access token of an
// Ory Hydra started for the suite: the orders are placed by 50 customers
// with their own tokens, the provider is switched with an admin token.
//
// The short version (provider outage and inventory SIGKILL, a few seconds
// each) is TestFaultsShort and runs in `make test`; the whole suite, behind
// the `faults` build tag and run by `make test-faults`, is TestFaults (the
// invariants) and TestFaultAlerts (the same faults with Prometheus and
// Alertmanager beside the stack, each held until its alert fires:
// monitor_test.go).
package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"

	"github.com/orderflow/orderflow/pkg/authtest"
	"github.com/orderflow/orderflow/pkg/queue/queuetest"
	"github.com/orderflow/orderflow/pkg/smtptest"
	"github.com/orderflow/orderflow/test/invariants"
	teststack "github.com/orderflow/orderflow/test/stack"
)

// customers is how many customers place the load's orders, each with a
// token of their own.
const customers = 50

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "orderflow-faults-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	builds := [][]string{
		{"-o", dir + "/",
			"github.com/orderflow/orderflow/services/order",
			"github.com/orderflow/orderflow/services/inventory",
			"github.com/orderflow/orderflow/services/payment",
			"github.com/orderflow/orderflow/services/payment/provider",
			"github.com/orderflow/orderflow/services/notification"},
		// Toxiproxy's server, at the version go.mod pins (its `tool` line).
		{"-o", filepath.Join(dir, "toxiproxy-server"), "github.com/Shopify/toxiproxy/v2/cmd/server"},
	}
	for _, args := range builds {
		cmd := exec.Command("go", append([]string{"build"}, args...)...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build the services and Toxiproxy:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// process is one running binary.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// The Toxiproxy proxies of a stack, by name: one per service's Postgres
// database (pgProxy), Redis (inventory's cache, order's rate limits), the
// SQS endpoint (order's relay, notification's workers) and order's calls to
// payment (for a partition between the two).
const (
	redisProxy   = "redis"
	sqsProxy     = "sqs"
	paymentProxy = "order-to-payment"
)

// pgProxy is the name of the proxy in front of service's database.
func pgProxy(service string) string { return "postgres-" + service }

// stack is the five processes, their databases and the Toxiproxy proxies in
// front of their dependencies.
type stack struct {
	t     *testing.T
	dir   string
	ports map[string]int
	env   map[string][]string
	db    *invariants.DB // direct to the real server, for the checks
	smtp  *smtptest.Server
	hydra *authtest.Hydra
	// tokens are the customers' access tokens, by customer id.
	tokens map[string]string

	toxi    *toxiproxy.Client
	proxies map[string]*toxiproxy.Proxy

	mu    sync.Mutex
	procs map[string]*process

	// mon, when set, is the Prometheus and Alertmanager watching the
	// stack: each fault that names an alert is then held until it fires.
	mon *monitor
	// prev is the previous fault's alert (nil: none mapped) and name, for
	// an alert that went pending during it and fires during the next one.
	prev     *alertWant
	prevName string
	// readUnordered: the load reads the products it never orders. With one
	// read per order over the same 20 products, every order's stock change
	// invalidates the cached product about as often as it is read, so the
	// hit ratio stays below 50% and CacheHitRatioCollapse fires on a
	// healthy stack: true of that load (a shop reads its products far more
	// often than it sells each), and noise for the alert phase.
	readUnordered bool
}

var services = []string{"provider", "inventory", "payment", "notification", "order"}

// freePort returns a port that was free a moment ago, for a process the
// suite starts and that binds it itself. It is drawn below Linux's
// ephemeral range (32768-60999): a port from ":0" is one of those, and any
// outgoing connection on the machine may take it before the service binds
// it ("bind: address already in use" in a CI run).
func freePort(t *testing.T) int {
	t.Helper()
	for range 100 {
		port := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		ln.Close()
		return port
	}
	t.Fatal("no free port in 20000-31999")
	return 0
}

// startToxiproxy starts the Toxiproxy server built by TestMain on a free
// port, logging to dir, and returns its client. The server stops when the
// test ends.
func startToxiproxy(t *testing.T, dir string) *toxiproxy.Client {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(filepath.Join(binDir, "toxiproxy-server"), "-host", host, "-port", port)
	// It logs every connection at info; the suite opens thousands.
	cmd.Env = append(os.Environ(), "LOG_LEVEL=warn")
	startDaemon(t, dir, "toxiproxy", "http://"+addr+"/version", cmd)
	return toxiproxy.NewClient(addr)
}

// proxy creates a Toxiproxy proxy on a free port in front of upstream
// (host:port) and returns its address.
func (s *stack) proxy(name, upstream string) string {
	s.t.Helper()
	p, err := s.toxi.CreateProxy(name, "127.0.0.1:0", upstream)
	if err != nil {
		s.t.Fatalf("create proxy %s: %v", name, err)
	}
	s.proxies[name] = p
	return p.Listen
}

// viaProxy rewrites rawURL's host to addr.
func viaProxy(t *testing.T, rawURL, addr string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = addr
	return u.String()
}

// setEnabled enables or disables proxies. A disabled proxy closes every
// connection through it and refuses new ones: what a process that died, or
// a server that restarts, looks like to its clients.
func (s *stack) setEnabled(enabled bool, names ...string) {
	s.t.Helper()
	for _, name := range names {
		p := s.proxies[name]
		// Setting a proxy's state is idempotent, so a call that died on
		// the way (one run saw "Post …/proxies/redis: EOF" from a reused
		// keep-alive connection) is simply made again.
		var err error
		for try := 0; try < 3; try++ {
			if enabled {
				err = p.Enable()
			} else {
				err = p.Disable()
			}
			if err == nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			s.t.Fatalf("proxy %s enabled=%t: %v", name, enabled, err)
		}
	}
}

// addToxic adds a toxic of type typ to the named proxies, on both streams
// (client to server and back) unless stream says which.
func (s *stack) addToxic(typ, stream string, attrs toxiproxy.Attributes, names ...string) {
	s.t.Helper()
	streams := []string{"upstream", "downstream"}
	if stream != "" {
		streams = []string{stream}
	}
	for _, name := range names {
		for _, st := range streams {
			if _, err := s.proxies[name].AddToxic(typ+"-"+st, typ, st, 1, attrs); err != nil {
				s.t.Fatalf("add %s toxic to %s: %v", typ, name, err)
			}
		}
	}
}

// removeToxics removes every toxic of the named proxies.
func (s *stack) removeToxics(names ...string) {
	s.t.Helper()
	for _, name := range names {
		p := s.proxies[name]
		toxics, err := p.Toxics()
		if err != nil {
			s.t.Fatalf("toxics of %s: %v", name, err)
		}
		for _, tx := range toxics {
			if err := p.RemoveToxic(tx.Name); err != nil {
				s.t.Fatalf("remove toxic %s of %s: %v", tx.Name, name, err)
			}
		}
	}
}

// pgProxies are the names of every service's Postgres proxy.
func pgProxies() []string {
	var out []string
	for _, name := range invariants.Databases {
		out = append(out, pgProxy(name))
	}
	return out
}

// startStack starts the stack; extra holds VAR=value settings per service.
func startStack(t *testing.T, extra map[string][]string) *stack {
	t.Helper()
	sqsCfg := queuetest.Config(t)
	redisAddr := os.Getenv("TEST_REDIS_ADDR")
	if redisAddr == "" {
		redisAddr = "127.0.0.1:6379"
	}
	if c, err := net.DialTimeout("tcp", redisAddr, 2*time.Second); err != nil {
		t.Fatalf("Redis is needed at %s and does not answer: %v; start it with `make deps`", redisAddr, err)
	} else {
		c.Close()
	}
	sqsURL, err := url.Parse(sqsCfg.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	// Hydra is not behind a proxy: the faults are the services' own
	// dependencies. Its tokens live an hour, not 15 minutes: the load signs
	// its customers in once, and the whole suite runs for several minutes.
	h := authtest.Start(t, authtest.Options{AccessTokenTTL: time.Hour})
	s := &stack{
		t: t, dir: t.TempDir(), ports: map[string]int{}, env: map[string][]string{},
		db: invariants.Open(t), procs: map[string]*process{}, smtp: smtptest.Start(t), hydra: h,
		proxies: map[string]*toxiproxy.Proxy{},
	}
	var ids []string
	for i := range customers {
		ids = append(ids, customerID(i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if s.tokens, err = teststack.CustomerTokens(ctx, h, ids); err != nil {
		t.Fatal(err)
	}
	if dir := os.Getenv("FAULTS_LOG_DIR"); dir != "" { // keep the services' logs
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		s.dir = dir
	}
	s.toxi = startToxiproxy(t, s.dir)
	for _, name := range services {
		s.ports[name] = freePort(t)
	}
	addr := func(name string) string { return fmt.Sprintf("127.0.0.1:%d", s.ports[name]) }
	// The machine's Postgres is shared: the pools below are small (28
	// connections in all, 10 more for the checks), and a server that runs
	// out of connections ("too many clients") fails the suite's services
	// as a Postgres fault would.
	s.db.LogConnections()
	// Each service reaches its own database through a proxy of its own, so
	// that one service's connections can be cut while the others' work.
	dbURL := map[string]string{}
	for name, u := range s.db.URLs {
		pg, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		dbURL[name] = viaProxy(t, u, s.proxy(pgProxy(name), pg.Host))
	}
	redisURL := "redis://" + s.proxy(redisProxy, redisAddr) + "/0"
	paymentURL := "http://" + s.proxy(paymentProxy, addr("payment"))
	invoices, emails := queuetest.Name("order-invoices"), queuetest.Name("order-emails")
	sqsEndpoint := viaProxy(t, sqsCfg.Endpoint, s.proxy(sqsProxy, sqsURL.Host))
	aws := []string{"AWS_REGION=" + sqsCfg.Region, "AWS_ENDPOINT_URL_SQS=" + sqsEndpoint,
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test"}
	s.env["provider"] = []string{"PROVIDER_ADDR=" + addr("provider"), "PROVIDER_DATABASE_URL=" + dbURL["provider"], "PROVIDER_DB_MAX_CONNS=4"}
	s.env["inventory"] = []string{"INVENTORY_ADDR=" + addr("inventory"), "INVENTORY_DATABASE_URL=" + dbURL["inventory"], "INVENTORY_DB_MAX_CONNS=6",
		"INVENTORY_SEED_PRODUCTS=100", "INVENTORY_SWEEP_INTERVAL=1s", "INVENTORY_REDIS_URL=" + redisURL}
	s.env["payment"] = []string{"PAYMENT_ADDR=" + addr("payment"), "PAYMENT_DATABASE_URL=" + dbURL["payment"], "PAYMENT_DB_MAX_CONNS=6",
		"PAYMENT_PROVIDER_URL=http://" + addr("provider"),
		// An intent whose outcome is unknown is settled (or abandoned) 5 s
		// after it was made instead of a minute: longer than a provider
		// call with its retries (3.6 s with the 1 s provider timeout).
		"PAYMENT_RECONCILE_AFTER=5s", "PAYMENT_RECONCILE_INTERVAL=1s"}
	s.env["notification"] = append([]string{"NOTIFICATION_ADDR=" + addr("notification"),
		"NOTIFICATION_DATABASE_URL=" + dbURL["notification"], "NOTIFICATION_DB_MAX_CONNS=4", "NOTIFICATION_SMTP_ADDR=" + s.smtp.Addr(),
		"NOTIFICATION_INVOICE_QUEUE=" + invoices, "NOTIFICATION_EMAIL_QUEUE=" + emails,
		"NOTIFICATION_VISIBILITY_TIMEOUT=5s"}, aws...)
	s.env["order"] = append([]string{"ORDER_ADDR=" + addr("order"), "ORDER_DATABASE_URL=" + dbURL["order"], "ORDER_DB_MAX_CONNS=8",
		"ORDER_INVENTORY_URL=http://" + addr("inventory"), "ORDER_PAYMENT_URL=" + paymentURL, "ORDER_REDIS_URL=" + redisURL,
		"ORDER_INVOICE_QUEUE=" + invoices, "ORDER_EMAIL_QUEUE=" + emails,
		"ORDER_CALL_TIMEOUT=1500ms", "ORDER_RETRY_MAX_BACKOFF=200ms", "ORDER_REQUEST_TIMEOUT=6s", "ORDER_RECOVERY_INTERVAL=500ms",
		"ORDER_RECOVERY_AFTER=7s",
		// A failed compensation is retried after at most 250 ms, 500 ms, …
		// 2 s instead of 1 s, 2 s, … 5 min, and parked only after 100
		// attempts: a compensation that waits for a payment intent to settle
		// (through a provider outage and the 5 s grace after it) is done
		// within 2 s of it, and none is parked by the suite's outages.
		"ORDER_COMPENSATION_BACKOFF=250ms", "ORDER_COMPENSATION_MAX_BACKOFF=2s", "ORDER_COMPENSATION_MAX_ATTEMPTS=100"}, aws...)
	for name, vars := range extra {
		s.env[name] = append(s.env[name], vars...)
	}
	// Registered before the first start: a service that fails to start
	// must not leave the ones before it running.
	t.Cleanup(func() {
		for _, name := range slices.Backward(services) {
			s.signal(name, syscall.SIGTERM)
		}
		if t.Failed() {
			for _, name := range services {
				b, _ := os.ReadFile(filepath.Join(s.dir, name+".log"))
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				if len(lines) > 30 {
					lines = lines[len(lines)-30:]
				}
				t.Logf("--- last lines of %s ---\n%s", name, strings.Join(lines, "\n"))
			}
		}
	})
	for _, name := range services {
		s.start(name)
	}
	return s
}

func (s *stack) url(name, path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", s.ports[name], path)
}

// start starts a process and waits until its /readyz answers 200.
func (s *stack) start(name string) {
	s.t.Helper()
	logPath := filepath.Join(s.dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binDir, name))
	cmd.Env = slices.Concat(os.Environ(), []string{"LOG_LEVEL=info"}, teststack.AuthEnv(s.hydra, name), s.env[name])
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start %s: %v", name, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	s.mu.Lock()
	s.procs[name] = p
	s.mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			b, _ := os.ReadFile(logPath)
			s.t.Fatalf("%s exited during start-up:\n%s", name, b)
		default:
		}
		resp, err := http.Get(s.url(name, "/readyz"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("%s not ready within 60s", name)
}

// restart stops a process with SIGTERM and starts it again with env (its
// VAR=value settings; a later setting of a variable wins).
func (s *stack) restart(name string, env []string) {
	s.t.Helper()
	s.signal(name, syscall.SIGTERM)
	s.env[name] = env
	s.start(name)
}

// signal sends sig to the process and waits for it to exit.
func (s *stack) signal(name string, sig syscall.Signal) {
	s.mu.Lock()
	p := s.procs[name]
	delete(s.procs, name)
	s.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		s.t.Errorf("%s did not exit within 20s of %v", name, sig)
	}
}

// setProvider changes the simulated provider through payment's admin API,
// with a fresh admin token.
func (s *stack) setProvider(latencyMS int, outage bool) {
	s.t.Helper()
	body := fmt.Sprintf(`{"latency_ms":%d,"error_rate":0,"outage":%t}`, latencyMS, outage)
	if status, reply := s.call(http.MethodPut, s.url("payment", "/admin/provider"), s.adminToken(), body); status != http.StatusOK {
		s.t.Fatalf("PUT /admin/provider = %d %s", status, reply)
	}
}

// result is one request of the load.
type result struct {
	sent    time.Time
	latency time.Duration
	status  int // 0: transport error
	orderID string
	read    bool // a product read, not an order
	// retryAfter: the answer had a Retry-After header.
	retryAfter bool
}

// load sends orders (and a product read with each) at a steady rate until
// stopped, and records every answer.
type load struct {
	s      *stack
	client *http.Client
	stop   chan struct{}
	wg     sync.WaitGroup

	mu      sync.Mutex
	results []result
}

// skus is the part of the catalogue the load orders (and reads, unless
// the stack reads the unordered products).
var skus = func() []string {
	out := make([]string, 20)
	for i := range out {
		out[i] = fmt.Sprintf("SKU-%05d", i+1)
	}
	return out
}()

// unorderedSKUs are the other 80 products of the seeded catalogue
// (INVENTORY_SEED_PRODUCTS=100), which the load never orders.
var unorderedSKUs = func() []string {
	out := make([]string, 80)
	for i := range out {
		out[i] = fmt.Sprintf("SKU-%05d", len(skus)+i+1)
	}
	return out
}()

func (s *stack) startLoad(perSecond int) *load {
	l := &load{s: s, stop: make(chan struct{}),
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	l.wg.Go(func() {
		tick := time.NewTicker(time.Second / time.Duration(perSecond))
		defer tick.Stop()
		sem := make(chan struct{}, 200) // bounded: a stuck service cannot grow the load
		var n int
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			n++
			i := n
			select {
			case sem <- struct{}{}:
			default:
				continue // 200 requests in flight: skip the tick
			}
			l.wg.Go(func() {
				defer func() { <-sem }()
				l.order(i)
			})
			l.wg.Go(func() { l.read(i) })
		}
	})
	return l
}

func (l *load) order(i int) {
	method := "pm_card_ok"
	if i%10 == 0 {
		method = "pm_card_declined"
	}
	items := []map[string]any{{"sku": skus[rand.IntN(len(skus))], "quantity": 1 + rand.IntN(3)}}
	if i%3 == 0 {
		second := skus[rand.IntN(len(skus))]
		if second != items[0]["sku"] {
			items = append(items, map[string]any{"sku": second, "quantity": 1})
		}
	}
	// The body names the customer too: it must be the token's subject.
	customer := customerID(i % customers)
	body, _ := json.Marshal(map[string]any{"customer_id": customer,
		"email": fmt.Sprintf("c%d@example.com", i%customers), "items": items, "payment_method": method})
	req, _ := http.NewRequest(http.MethodPost, l.s.url("order", "/v1/orders"), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+l.s.tokens[customer])
	req.Header.Set("Idempotency-Key", fmt.Sprintf("faults-%d-%d", time.Now().UnixNano(), i))
	r := result{sent: time.Now()}
	resp, err := l.client.Do(req)
	r.latency = time.Since(r.sent)
	if err == nil {
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		resp.Body.Close()
		r.status = resp.StatusCode
		r.retryAfter = resp.Header.Get("Retry-After") != ""
		if id, ok := m["id"].(string); ok && r.status == http.StatusCreated {
			r.orderID = id
		} else if id, ok := m["order_id"].(string); ok {
			r.orderID = id
		}
	}
	l.record(r)
}

func customerID(i int) string { return fmt.Sprintf("cus_%d", i) }

// read reads a product, anonymously as a shop's visitors do.
func (l *load) read(i int) {
	r := result{sent: time.Now(), read: true}
	reads := skus
	if l.s.readUnordered {
		reads = unorderedSKUs
	}
	resp, err := l.client.Get(l.s.url("inventory", "/v1/products/"+reads[i%len(reads)]))
	r.latency = time.Since(r.sent)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		r.status = resp.StatusCode
	}
	l.record(r)
}

func (l *load) record(r result) {
	l.mu.Lock()
	l.results = append(l.results, r)
	l.mu.Unlock()
}

// snapshot returns the results so far.
func (l *load) snapshot() []result {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.results)
}

// halt stops the load and waits for the requests in flight.
func (l *load) halt() []result {
	close(l.stop)
	l.wg.Wait()
	return l.snapshot()
}

// fault is one fault of the suite: inject it, keep it for hold, heal it.
type fault struct {
	name   string
	hold   time.Duration
	inject func(s *stack)
	heal   func(s *stack)
	// setup and teardown, when set, run before the load starts and after
	// the checks: for a fault that needs a process configured its own way.
	setup, teardown func(s *stack)
	// verify, when set, runs once the system settled and the invariants
	// held: it checks what this fault in particular must have shown, and
	// returns what it saw (for the table's last column) and what is broken.
	verify func(s *stack) (seen string, broken []string)
	// alert, when set, is the alert the fault must fire. On a stack with a
	// monitor the fault is then held until that alert fires (instead of
	// for hold), and must resolve after the heal.
	alert *alertWant
}

// row is one line of the fault table.
type row struct {
	fault      string
	orders     int
	byStatus   map[int]int
	readErrors int
	reads      int
	p99        time.Duration // of orders sent during the fault
	p99Open    time.Duration // of orders sent once the breaker had opened (fault 1)
	recover    time.Duration // from heal to the first 201 of an order sent after it
	drain      time.Duration // from the end of the load until every order settled
	seen       string        // what the fault's own check saw
	violations []string
	// failFast are the orders sent once the breaker had opened (fault 1)
	// that were not answered fast-fail: 503 with Retry-After, or a 409 or
	// 429 given before payment is called.
	failFast []string

	// Filled on a stack with a monitor, for a fault with an alert.
	watched  bool          // the stack had a monitor
	alert    string        // the alert it must fire, with its for:
	fired    time.Duration // from the fault in place to the alert firing; 0: never
	bound    time.Duration // the most fired may be: lead + for: + 2 scrapes
	resolved time.Duration // from the heal to the alert gone; 0: never
	also     []string      // the other alerts that fired during the fault
}

// run drives the load through the fault and checks the invariants.
func (s *stack) run(f fault, rate int, warmup, settle time.Duration, initial map[string]int) row {
	s.t.Helper()
	s.t.Logf("fault %q: load %d/s, warm-up %v, hold %v", f.name, rate, warmup, f.hold)
	if f.setup != nil {
		f.setup(s)
	}
	r := row{fault: f.name, byStatus: map[int]int{}}
	watch := s.mon != nil
	if watch {
		// What fires during this fault must be its own doing.
		if left := s.mon.awaitQuiet(3 * time.Minute); len(left) > 0 {
			r.violations = append(r.violations, fmt.Sprintf("cause alerts still firing 3m after the previous fault: %v", left))
		}
	}
	l := s.startLoad(rate)
	time.Sleep(warmup)
	injected := time.Now()
	mails := 0
	if watch {
		mails = len(s.mon.smtp.Messages())
	}
	f.inject(s)
	if watch && f.alert != nil {
		r.violations = append(r.violations, s.holdUntilFiring(f.alert, injected, time.Now(), mails, &r)...)
	} else {
		time.Sleep(f.hold)
	}
	f.heal(s)
	healed := time.Now()
	// Recovered when an order sent after the heal is confirmed.
	deadline := healed.Add(90 * time.Second)
	for r.recover == 0 && time.Now().Before(deadline) {
		for _, res := range l.snapshot() {
			if !res.read && res.sent.After(healed) && res.status == http.StatusCreated {
				r.recover = res.sent.Add(res.latency).Sub(healed)
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r.recover == 0 {
		r.violations = append(r.violations, "no order was confirmed within 90s of the heal")
	}
	if watch && f.alert != nil && r.fired > 0 {
		last, ok := s.mon.awaitResolved(f.alert.alertMatch, f.alert.resolveWithin-time.Since(healed))
		if ok {
			r.resolved = max(last.Sub(healed), time.Millisecond)
		} else {
			r.violations = append(r.violations, fmt.Sprintf("%s still active %v after the heal", f.alert.alertMatch, f.alert.resolveWithin))
		}
	}
	time.Sleep(settle)
	results := l.halt()
	stopped := time.Now()

	var during, afterOpen []time.Duration
	var firstFast time.Time
	for _, res := range results {
		if res.read {
			r.reads++
			if res.status != http.StatusOK && res.status != http.StatusNotModified {
				r.readErrors++
			}
			continue
		}
		r.orders++
		r.byStatus[res.status]++
		if res.sent.Before(injected) || !res.sent.Before(healed) {
			continue
		}
		during = append(during, res.latency)
		if res.status == http.StatusServiceUnavailable && firstFast.IsZero() {
			firstFast = res.sent.Add(res.latency)
		}
	}
	// Once the first 503 came back, the breakers in front of the failing
	// dependency are open (or about to be: a few more attempts at most).
	if !firstFast.IsZero() {
		for _, res := range results {
			if !res.read && res.sent.After(firstFast.Add(200*time.Millisecond)) && res.sent.Before(healed) {
				afterOpen = append(afterOpen, res.latency)
			}
		}
	}
	r.p99, r.p99Open = p99(during), p99(afterOpen)
	if !firstFast.IsZero() {
		for _, res := range results {
			if res.read || !res.sent.After(firstFast.Add(200*time.Millisecond)) || !res.sent.Before(healed) {
				continue
			}
			fast := (res.status == http.StatusServiceUnavailable && res.retryAfter) ||
				res.status == http.StatusConflict || res.status == http.StatusTooManyRequests
			if !fast {
				r.failFast = append(r.failFast, fmt.Sprintf("+%dms:%d(retry-after %t)",
					res.sent.Sub(injected).Milliseconds(), res.status, res.retryAfter))
			}
		}
	}
	var slow []string
	for _, res := range results {
		if !res.read && !res.sent.Before(injected) && res.sent.Before(healed) && res.latency > 100*time.Millisecond {
			slow = append(slow, fmt.Sprintf("+%dms:%d:%dms", res.sent.Sub(injected).Milliseconds(), res.status, res.latency.Milliseconds()))
		}
	}
	if len(slow) > 40 {
		slow = append(slow[:40], fmt.Sprintf("… %d more", len(slow)-40))
	}
	s.t.Logf("fault %q: orders slower than 100ms during the fault (sent at +offset:status:latency): %v", f.name, slow)

	r.violations = append(r.violations, s.settle(results)...)
	r.drain = time.Since(stopped)
	if len(r.violations) == 0 {
		r.violations = s.checkInvariants(results, initial)
	}
	if f.verify != nil {
		var broken []string
		r.seen, broken = f.verify(s)
		r.violations = append(r.violations, broken...)
	}
	if f.teardown != nil {
		f.teardown(s)
	}
	if watch {
		r.watched = true
		r.violations = append(r.violations, s.unrelatedAlerts(f.alert, injected, &r)...)
		s.prev, s.prevName = f.alert, f.name
	}
	return r
}

// holdUntilFiring keeps the fault in place until its alert fires (for at
// most lead + for: + two scrape intervals from inPlace), then checks that
// the alert reached Alertmanager and that Alertmanager mailed it. It
// returns what is broken.
func (s *stack) holdUntilFiring(want *alertWant, injected, inPlace time.Time, mails int, r *row) []string {
	s.t.Helper()
	rule, ok := s.mon.rules[want.name]
	if !ok {
		s.t.Fatalf("%s: no alerting rule %s in deploy/prometheus/rules", r.fault, want.name)
	}
	r.alert = fmt.Sprintf("%s (for: %v)", want.alertMatch, rule.forDur)
	r.bound = want.lead + rule.forDur + 2*scrapeInterval
	e, ok := s.mon.awaitFiring(want.alertMatch, injected, inPlace.Add(r.bound+pollInterval))
	if !ok {
		return []string{fmt.Sprintf("%s did not fire within %v of the fault (lead %v + for: %v + 2 scrape intervals)",
			want.alertMatch, r.bound, want.lead, rule.forDur)}
	}
	r.fired = max(e.fired.Sub(inPlace), 0)
	var broken []string
	if err := s.mon.inAlertmanager(want.alertMatch, 10*time.Second); err != nil {
		broken = append(broken, err.Error())
	} else if _, err := s.mon.mailed(want.name, mails, 15*time.Second); err != nil {
		broken = append(broken, err.Error())
	}
	return broken
}

// unrelatedAlerts lists, in r.also, the alerts other than the fault's own
// that fired from the injection on, and returns as broken those that are
// neither the fault's own, nor one it may cause (want.also), nor an SLO
// alert: those read order creation's budgets over minutes to days, which
// every fault that fails or slows orders burns, and are proven by their
// promtool unit tests. An alert that went pending before the injection is
// the previous fault's doing (its rate windows outlast it): it is checked
// against what that fault may cause.
func (s *stack) unrelatedAlerts(want *alertWant, injected time.Time, r *row) []string {
	var broken []string
	for _, e := range s.mon.firedBetween(injected, time.Now()) {
		owner, ownerName := want, r.fault
		if e.activeAt.Before(injected) {
			owner, ownerName = s.prev, s.prevName
		}
		if owner == nil {
			owner = &alertWant{} // a fault that fires no cause alert
		}
		if owner.name != "" && owner.matches(&e) && owner == want {
			continue
		}
		allowed := s.mon.rules[e.name].symptom() || (owner.name != "" && owner.matches(&e))
		for _, a := range owner.also {
			allowed = allowed || a.matches(&e)
		}
		seen := e.String()
		if ownerName != r.fault && !s.mon.rules[e.name].symptom() {
			seen += " (pending since " + ownerName + ")"
		}
		r.also = append(r.also, seen)
		if !allowed {
			broken = append(broken, fmt.Sprintf("unrelated alert %s fired (%s after the injection; pending since %s)",
				seen, ms(e.fired.Sub(injected)), e.activeAt.Format("15:04:05")))
		}
	}
	return broken
}

func p99(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[(len(d)*99+99)/100-1]
}

// settle waits until every saga has ended, every payment's outcome is
// known, every compensation has run, every outbox event was published and
// every confirmed order has its invoice and e-mail; it reports what never
// settled.
func (s *stack) settle(results []result) []string {
	s.t.Helper()
	return s.db.Settle(90*time.Second, s.db.EveryConfirmedNotified)
}

// checkInvariants checks the databases against each other and against
// what the clients were told, and money conservation against the
// provider's totals.
func (s *stack) checkInvariants(results []result, initial map[string]int) []string {
	s.t.Helper()
	var out invariants.Violations
	s.db.CheckNoPending(&out)
	s.db.CheckNoParked(&out)
	s.db.CheckStock(&out, skus, initial)
	var created []string
	for _, res := range results {
		if !res.read && res.status == http.StatusCreated {
			created = append(created, res.orderID)
		}
	}
	s.db.CheckOrders(&out, created, "confirmed", "cancelled")
	s.db.CheckEmailsSent(&out, s.smtp)
	captured, refunded := s.providerTotals()
	s.db.CheckMoney(&out, captured, refunded)
	return out
}

// providerTotals reads what the provider captured and refunded in all,
// from its admin route (the merchant's API key).
func (s *stack) providerTotals() (captured, refunded int64) {
	s.t.Helper()
	status, body := s.call(http.MethodGet, s.url("provider", "/admin/totals"), teststack.ProviderAPIKey, "")
	if status != http.StatusOK {
		s.t.Fatalf("GET provider /admin/totals = %d %s", status, body)
	}
	var t struct {
		CapturedCents int64 `json:"captured_cents"`
		RefundedCents int64 `json:"refunded_cents"`
	}
	if err := json.Unmarshal(body, &t); err != nil {
		s.t.Fatalf("GET provider /admin/totals: %v: %s", err, body)
	}
	return t.CapturedCents, t.RefundedCents
}

// call sends one request with a bearer token (and a JSON body unless
// empty) and returns the status and body; a transport error fails the test.
func (s *stack) call(method, url, token, body string) (int, []byte) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// adminToken is a fresh operator's token (scope orderflow.admin).
func (s *stack) adminToken() string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	token, err := s.hydra.AdminToken(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	return token
}

// suite is how runSuite runs its faults.
type suite struct {
	extra          map[string][]string // VAR=value settings per service
	rate           int                 // orders per second
	warmup, settle time.Duration
	// watch starts a Prometheus and an Alertmanager beside the stack: the
	// faults with an alert are held until it fires, and must resolve.
	watch bool
	// tableEnv names the environment variable holding the path the table
	// is written to, if set.
	tableEnv string
}

// runSuite runs faults one after the other on one stack, prints the table
// and fails the test on any broken invariant. FAULTS_ONLY, when set, runs
// only the faults it numbers ("2,10": the numbers their names begin with),
// to work on a few without the whole phase.
func runSuite(t *testing.T, cfg suite, faults []fault) []row {
	faults = onlyFaults(t, faults, os.Getenv("FAULTS_ONLY"))
	began := time.Now()
	s := startStack(t, cfg.extra)
	if cfg.watch {
		s.readUnordered = true
		s.mon = startMonitor(s)
	}
	initial, _ := s.db.Stock(skus)
	var rows []row
	for _, f := range faults {
		r := s.run(f, cfg.rate, cfg.warmup, cfg.settle, initial)
		rows = append(rows, r)
		for _, v := range r.violations {
			t.Errorf("%s: %s", f.name, v)
		}
	}
	table := formatTable(rows)
	table += fmt.Sprintf("\n%d faults in %s (stack start-up included).\n", len(rows), ms(time.Since(began)))
	t.Log("\n" + table)
	fmt.Println(table)
	if path := os.Getenv(cfg.tableEnv); cfg.tableEnv != "" && path != "" {
		if err := os.WriteFile(path, []byte(table), 0o644); err != nil {
			t.Error(err)
		}
	}
	return rows
}

// onlyFaults returns the faults whose numbers the comma-separated list
// only names, all of them when it is empty; a number no fault has fails
// the test.
func onlyFaults(t *testing.T, faults []fault, only string) []fault {
	t.Helper()
	if only == "" {
		return faults
	}
	var out []fault
	for _, n := range strings.Split(only, ",") {
		n = strings.TrimSpace(n)
		i := slices.IndexFunc(faults, func(f fault) bool { return strings.HasPrefix(f.name, n+" ") })
		if i < 0 {
			t.Fatalf("FAULTS_ONLY=%s: no fault numbered %q", only, n)
		}
		out = append(out, faults[i])
	}
	return out
}

// failFastViolations reports the orders of a provider outage that were
// not answered fast-fail once the breakers had opened: what a p99 measured
// the time of, checked by what the answers were instead, since a timing
// depends on how busy the machine is (the benchmarks measure speed).
func failFastViolations(r row) []string {
	if r.p99Open == 0 {
		return []string{"no order was answered 503 during the outage: the breakers never opened"}
	}
	if len(r.failFast) == 0 {
		return nil
	}
	shown := r.failFast
	if len(shown) > 20 {
		shown = append(slices.Clone(shown[:20]), fmt.Sprintf("… %d more", len(r.failFast)-20))
	}
	return []string{fmt.Sprintf("%d orders sent once the breakers had opened were not answered 503 with Retry-After "+
		"(nor 409/429 before payment); sent at +offset:status: %v", len(r.failFast), shown)}
}

func formatTable(rows []row) string {
	watched := slices.ContainsFunc(rows, func(r row) bool { return r.watched })
	var b strings.Builder
	b.WriteString("| fault | orders | answers by status | p99 during fault | p99 once breaker open | time to recover | settled in | product reads failed | invariants | what the fault showed |")
	if watched {
		b.WriteString(" alert | fired after | resolved after | other alerts that fired |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	} else {
		b.WriteString("\n|---|---|---|---|---|---|---|---|---|---|\n")
	}
	for _, r := range rows {
		var statuses []int
		for st := range r.byStatus {
			statuses = append(statuses, st)
		}
		sort.Ints(statuses)
		var parts []string
		for _, st := range statuses {
			label := fmt.Sprint(st)
			if st == 0 {
				label = "conn error"
			}
			parts = append(parts, fmt.Sprintf("%s: %d", label, r.byStatus[st]))
		}
		inv := "held"
		if len(r.violations) > 0 {
			inv = fmt.Sprintf("BROKEN (%d)", len(r.violations))
		}
		open, seen := "–", "–"
		if r.p99Open > 0 {
			open = ms(r.p99Open)
		}
		if r.seen != "" {
			seen = r.seen
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %d / %d | %s | %s |", r.fault, r.orders,
			strings.Join(parts, ", "), ms(r.p99), open, ms(r.recover), ms(r.drain), r.readErrors, r.reads, inv, seen)
		if watched {
			alert, fired, resolved := "none mapped", "–", "–"
			if r.alert != "" {
				alert, fired, resolved = r.alert, "NOT FIRED (bound "+ms(r.bound)+")", "–"
				if r.fired > 0 {
					fired = fmt.Sprintf("%s (bound %s)", ms(r.fired), ms(r.bound))
					resolved = "NOT RESOLVED"
				}
				if r.resolved > 0 {
					resolved = ms(r.resolved)
				}
			}
			also := "none"
			if len(r.also) > 0 {
				also = strings.Join(slices.Compact(slices.Sorted(slices.Values(r.also))), ", ")
			}
			fmt.Fprintf(&b, " %s | %s | %s | %s |", alert, fired, resolved, also)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func ms(d time.Duration) string {
	if d >= 10*time.Second {
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	return fmt.Sprintf("%d ms", d.Milliseconds())
}
