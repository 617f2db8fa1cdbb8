package rolling

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/orderflow/orderflow/pkg/authtest"
	"github.com/orderflow/orderflow/pkg/queue/queuetest"
	"github.com/orderflow/orderflow/pkg/smtptest"
	"github.com/orderflow/orderflow/test/invariants"
	"github.com/orderflow/orderflow/test/stack"
)

// drain is SHUTDOWN_DRAIN of the replicas, as make dev REPLICAS>1 sets it:
// longer than HAProxy's inter 1s × fall 2.
const drain = "3s"

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "orderflow-rolling-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	if err := stack.Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// replica is one order or inventory process.
type replica struct {
	name string // order-1, inventory-2: also HAProxy's server name
	bin  string // order, inventory
	port int
	env  []string

	cmd  *exec.Cmd
	done chan struct{}
}

func (r *replica) url(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", r.port, path) }

// cluster is the whole system: the single-instance services from
// test/stack, the replicas, HAProxy, and direct pools for the checks.
type cluster struct {
	t     *testing.T
	dir   string
	stack *stack.Stack
	smtp  *smtptest.Server
	db    *invariants.DB // direct pools, for the checks
	hydra *authtest.Hydra
	// tokens are the load's customers' access tokens, by customer id.
	tokens  map[string]string
	order   []*replica
	inv     []*replica
	haproxy *exec.Cmd
	hpDone  chan struct{}
	// Ports of HAProxy's frontends, and its admin socket.
	orderPort, invPort, statsPort int
	socket                        string
}

func (c *cluster) orderURL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", c.orderPort, path)
}

func (c *cluster) inventoryURL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", c.invPort, path)
}

// startCluster starts everything with n replicas of order and inventory.
func startCluster(t *testing.T, n int) *cluster {
	t.Helper()
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Fatal("haproxy is not installed; install Debian's package: sudo apt-get install haproxy " +
			"(make dev REPLICAS=3 installs it too)")
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:6379", 2*time.Second); err != nil {
		t.Fatalf("Redis is needed at 127.0.0.1:6379 and does not answer: %v; start it with `make deps`", err)
	} else {
		c.Close()
	}
	sqs := queuetest.Config(t)
	c := &cluster{t: t, dir: t.TempDir(), smtp: smtptest.Start(t)}
	if dir := os.Getenv("ROLLING_LOG_DIR"); dir != "" { // keep the logs
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		c.dir = dir
	}
	c.db = invariants.Open(t) // the services migrate their own databases
	dbs := c.db.URLs
	c.hydra = authtest.Start(t, authtest.Options{})
	s, err := stack.Start(stack.Config{BinDir: binDir, LogDir: c.dir, Databases: dbs,
		SQSEndpoint: sqs.Endpoint, SMTPAddr: c.smtp.Addr(), Hydra: c.hydra,
		Only: []string{"provider", "payment", "notification"}})
	if err != nil {
		t.Fatal(err)
	}
	c.stack = s
	t.Cleanup(func() { c.close() })

	c.orderPort, c.invPort, c.statsPort = freePort(t), freePort(t), freePort(t)
	c.socket = filepath.Join(c.dir, "haproxy.sock")
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	common := []string{"LOG_LEVEL=info", "SHUTDOWN_DRAIN=" + drain}
	for i := 1; i <= n; i++ {
		c.inv = append(c.inv, &replica{name: fmt.Sprintf("inventory-%d", i), bin: "inventory", port: freePort(t)})
		c.order = append(c.order, &replica{name: fmt.Sprintf("order-%d", i), bin: "order", port: freePort(t)})
	}
	for _, r := range c.inv {
		r.env = append(slices.Concat(common, stack.AuthEnv(c.hydra, "inventory")),
			fmt.Sprintf("INVENTORY_ADDR=127.0.0.1:%d", r.port),
			"INVENTORY_DATABASE_URL="+dbs["inventory"], "INVENTORY_SEED_PRODUCTS=100",
			"INVENTORY_CACHE_PREFIX=rolling-"+hex.EncodeToString(suffix[:])+":",
			"INVENTORY_SWEEP_INTERVAL=1s", "INVENTORY_RATE_LIMIT=0")
	}
	for _, r := range c.order {
		r.env = append(slices.Concat(common, stack.AuthEnv(c.hydra, "order")),
			fmt.Sprintf("ORDER_ADDR=127.0.0.1:%d", r.port),
			"ORDER_DATABASE_URL="+dbs["order"], "ORDER_DB_MAX_CONNS=10",
			// Through HAProxy, so inventory's restarts are drained for order too.
			"ORDER_INVENTORY_URL="+c.inventoryURL(""), "ORDER_PAYMENT_URL="+s.URL("payment", ""),
			"ORDER_INVOICE_QUEUE="+s.Queues[0], "ORDER_EMAIL_QUEUE="+s.Queues[1],
			"ORDER_RECOVERY_INTERVAL=500ms", "ORDER_RATE_LIMIT=0",
			"AWS_REGION=us-east-1", "AWS_ENDPOINT_URL_SQS="+sqs.Endpoint,
			"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test")
	}
	// inventory-1 migrates and seeds first; the others find it done.
	for _, r := range append(slices.Clone(c.inv), c.order...) {
		c.start(r)
	}
	c.startHAProxy()
	return c
}

// start starts a replica and waits until its own /readyz answers 200.
func (c *cluster) start(r *replica) {
	c.t.Helper()
	logPath := filepath.Join(c.dir, r.name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binDir, r.bin))
	cmd.Env = append(os.Environ(), r.env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		c.t.Fatalf("start %s: %v", r.name, err)
	}
	r.cmd, r.done = cmd, make(chan struct{})
	done := r.done
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			b, _ := os.ReadFile(logPath)
			c.t.Fatalf("%s exited during start-up:\n%s", r.name, b)
		default:
		}
		if resp, err := http.Get(r.url("/readyz")); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("%s not ready within 60s (log %s)", r.name, logPath)
}

// stop sends SIGTERM and waits for the replica to exit.
func (c *cluster) stop(r *replica) {
	c.t.Helper()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
		c.t.Errorf("%s did not exit within 30s of SIGTERM", r.name)
	}
	r.cmd = nil
}

// startHAProxy writes a configuration from deploy/haproxy/haproxy.cfg, as
// scripts/dev.sh does, with free ports for the frontends and the stats page
// and an admin socket, and starts HAProxy in the foreground.
func (c *cluster) startHAProxy() {
	c.t.Helper()
	src, err := os.ReadFile("../../deploy/haproxy/haproxy.cfg")
	if err != nil {
		c.t.Fatal(err)
	}
	cfg := string(src)
	replace := func(old, new string) {
		if !strings.Contains(cfg, old) {
			c.t.Fatalf("deploy/haproxy/haproxy.cfg has no %q; update the test with the config", old)
		}
		cfg = strings.Replace(cfg, old, new, 1)
	}
	replace("bind 127.0.0.1:8404", fmt.Sprintf("bind 127.0.0.1:%d", c.statsPort))
	replace("global\n", fmt.Sprintf("global\n    stats socket %s mode 600 level admin\n", c.socket))
	for _, group := range []struct {
		marker   string
		replicas []*replica
	}{{"# servers: order", c.order}, {"# servers: inventory", c.inv}} {
		var lines []string
		for _, r := range group.replicas {
			lines = append(lines, fmt.Sprintf("server %s 127.0.0.1:%d check", r.name, r.port))
		}
		replace(group.marker, strings.Join(lines, "\n    "))
	}
	path := filepath.Join(c.dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		c.t.Fatal(err)
	}
	env := append(os.Environ(), fmt.Sprintf("ORDER_PORT=%d", c.orderPort), fmt.Sprintf("INVENTORY_PORT=%d", c.invPort))
	check := exec.Command("haproxy", "-c", "-q", "-f", path)
	check.Env = env
	if out, err := check.CombinedOutput(); err != nil {
		c.t.Fatalf("haproxy -c -f %s: %v\n%s", path, err, out)
	}
	f, err := os.Create(filepath.Join(c.dir, "haproxy.log"))
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command("haproxy", "-db", "-f", path)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		c.t.Fatal(err)
	}
	c.haproxy, c.hpDone = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(c.hpDone) }()
	for _, r := range append(slices.Clone(c.order), c.inv...) {
		c.waitStatus(r, "UP")
	}
}

// serverStatus returns HAProxy's view of each server: "UP", "DOWN",
// "MAINT", "UP 1/2" while rising, and so on.
func (c *cluster) serverStatus() (map[string]string, error) {
	return c.stats("status")
}

// stats returns one column of HAProxy's CSV statistics per server (and per
// proxy, keyed "<proxy>/BACKEND").
func (c *cluster) stats(column string) (map[string]string, error) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/;csv", c.statsPort))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	r := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(body, []byte("# "))))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) == 0 {
		return nil, fmt.Errorf("stats CSV: %v", err)
	}
	col := slices.Index(rows[0], column)
	if col < 0 {
		return nil, fmt.Errorf("stats CSV has no column %q", column)
	}
	out := map[string]string{}
	for _, row := range rows[1:] {
		if col < len(row) && len(row) > 1 {
			key := row[1]
			if key == "BACKEND" || key == "FRONTEND" {
				key = row[0] + "/" + key
			}
			out[key] = row[col]
		}
	}
	return out, nil
}

// waitStatus waits until HAProxy reports the replica in status.
func (c *cluster) waitStatus(r *replica, status string) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last map[string]string
	for time.Now().Before(deadline) {
		st, err := c.serverStatus()
		if err == nil && st[r.name] == status {
			return
		}
		last = st
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("HAProxy does not report %s %s within 30s (last: %v)", r.name, status, last)
}

// takenOut watches HAProxy from the moment r gets SIGTERM and returns how
// long it took to mark r DOWN, or 0 when r exited first.
func (c *cluster) takenOut(r *replica) time.Duration {
	start, done := time.Now(), r.done
	for {
		select {
		case <-done:
			return 0
		default:
		}
		if st, err := c.serverStatus(); err == nil && strings.HasPrefix(st[r.name], "DOWN") {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// admin sends one command to HAProxy's runtime API.
func (c *cluster) admin(command string) {
	c.t.Helper()
	conn, err := net.DialTimeout("unix", c.socket, 2*time.Second)
	if err != nil {
		c.t.Fatalf("HAProxy admin socket: %v", err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintln(conn, command); err != nil {
		c.t.Fatal(err)
	}
	out, _ := io.ReadAll(bufio.NewReader(conn))
	if s := strings.TrimSpace(string(out)); s != "" {
		c.t.Fatalf("HAProxy %q: %s", command, s)
	}
}

func (c *cluster) close() {
	if c.haproxy != nil {
		_ = c.haproxy.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.hpDone:
		case <-time.After(10 * time.Second):
			_ = c.haproxy.Process.Kill()
			<-c.hpDone
		}
	}
	for _, r := range slices.Concat(c.order, c.inv) {
		c.stop(r)
	}
	if c.stack != nil {
		if err := c.stack.Close(); err != nil {
			c.t.Error(err)
		}
	}
	if c.t.Failed() {
		for _, name := range []string{"order-1", "inventory-1", "payment", "haproxy"} {
			b, _ := os.ReadFile(filepath.Join(c.dir, name+".log"))
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if len(lines) > 20 {
				lines = lines[len(lines)-20:]
			}
			c.t.Logf("--- last lines of %s ---\n%s", name, strings.Join(lines, "\n"))
		}
	}
}

// skus is the part of the catalogue the load touches: all 100 seeded
// products, so orders do not queue on a few hot rows.
var skus = func() []string {
	out := make([]string, 100)
	for i := range out {
		out[i] = fmt.Sprintf("SKU-%05d", i+1)
	}
	return out
}()

// result is one request of the load.
type result struct {
	at      time.Time // when the answer came
	read    bool      // a product read, not an order
	status  int       // 0: transport error
	err     string
	orderID string
}

// load is a closed-loop load: clients virtual clients, each a customer
// with an access token of its own, placing an order (one that can only
// succeed: a card that pays, stock to spare) and reading a product
// (anonymously, as a shop's visitors do), pausing think between rounds. It
// stops when stopped, after max rounds per client, or after limit.
type load struct {
	c      *cluster
	client *http.Client
	stop   chan struct{}
	wg     sync.WaitGroup

	mu      sync.Mutex
	results []result
}

// loadMode selects what each round of the load does.
type loadMode int

const (
	ordersAndReads loadMode = iota
	ordersOnly
	readsOnly
)

func (c *cluster) startLoad(clients int, think time.Duration, mode loadMode, limit time.Duration, max int) *load {
	c.t.Helper()
	// Each client signs in once, the first time a load has that many.
	var missing []string
	for i := range clients {
		if _, ok := c.tokens[customerID(i)]; !ok {
			missing = append(missing, customerID(i))
		}
	}
	if len(missing) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		tokens, err := stack.CustomerTokens(ctx, c.hydra, missing)
		if err != nil {
			c.t.Fatal(err)
		}
		if c.tokens == nil {
			c.tokens = map[string]string{}
		}
		maps.Copy(c.tokens, tokens)
	}
	l := &load{c: c, stop: make(chan struct{}),
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: clients * 2}}}
	deadline := time.Now().Add(limit)
	for i := range clients {
		l.wg.Go(func() {
			token := c.tokens[customerID(i)]
			for n := 0; n < max && time.Now().Before(deadline); n++ {
				select {
				case <-l.stop:
					return
				default:
				}
				if mode != readsOnly {
					l.order(token, i, n)
				}
				if mode != ordersOnly {
					l.read(i + n)
				}
				if think > 0 {
					time.Sleep(think)
				}
			}
		})
	}
	return l
}

func customerID(client int) string { return fmt.Sprintf("cus_%d", client) }

// order places an order as client's customer: the token says who, the body
// names no customer.
func (l *load) order(token string, client, n int) {
	body, _ := json.Marshal(map[string]any{
		"email": fmt.Sprintf("c%d@example.com", client), "payment_method": "pm_card_ok",
		"items": []map[string]any{{"sku": skus[(client*7+n)%len(skus)], "quantity": 1}}})
	req, _ := http.NewRequest(http.MethodPost, l.c.orderURL("/v1/orders"), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Idempotency-Key", fmt.Sprintf("rolling-%d-%d-%d", client, time.Now().UnixNano(), n))
	r := result{}
	resp, err := l.client.Do(req)
	if err != nil {
		r.err = err.Error()
	} else {
		var m map[string]any
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		_ = json.Unmarshal(b, &m)
		r.status = resp.StatusCode
		if id, ok := m["id"].(string); ok {
			r.orderID = id
		}
		if r.status != http.StatusCreated {
			r.err = string(b)
		}
	}
	r.at = time.Now()
	l.record(r)
}

func (l *load) read(i int) {
	req, _ := http.NewRequest(http.MethodGet, l.c.inventoryURL("/v1/products/"+skus[i%len(skus)]), nil)
	r := result{read: true}
	resp, err := l.client.Do(req)
	if err != nil {
		r.err = err.Error()
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		r.status = resp.StatusCode
		if r.status != http.StatusOK {
			r.err = string(b)
		}
	}
	r.at = time.Now()
	l.record(r)
}

func (l *load) record(r result) {
	l.mu.Lock()
	l.results = append(l.results, r)
	l.mu.Unlock()
}

// halt stops the load, waits for the requests in flight and returns every
// result.
func (l *load) halt() []result {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.results)
}

// settle waits until every saga has ended, every compensation has run,
// every outbox event was published and every confirmed order has its
// invoice and e-mail (the same conditions as test/faults, by counts).
func (c *cluster) settle() []string {
	c.t.Helper()
	return c.db.Settle(60*time.Second, c.db.AsManyNotifiedAsConfirmed)
}

// checkInvariants checks the databases against each other and against what
// the clients were told, as test/faults does: stock is conserved, every
// confirmed order has exactly one captured payment, one invoice and one
// confirmation e-mail and holds stock, no failed order holds stock or
// money, and every 201 is a confirmed order.
func (c *cluster) checkInvariants(results []result, initial map[string]int) []string {
	c.t.Helper()
	var out invariants.Violations
	c.db.CheckNoPending(&out)
	total, _ := c.db.Stock(skus)
	for sku, n := range total {
		if n != initial[sku] {
			out.Add("%s: available + held = %d; want the initial %d", sku, n, initial[sku])
		}
	}
	if n := c.db.Count("inventory", `SELECT count(*) FROM products WHERE available < 0`); n != 0 {
		out.Add("%d products with negative stock", n)
	}
	var created []string
	for _, r := range results {
		if !r.read && r.status == http.StatusCreated {
			created = append(created, r.orderID)
		}
	}
	c.db.CheckOrders(&out, created, "confirmed")
	c.db.CheckEmailsSent(&out, c.smtp)
	return out
}
