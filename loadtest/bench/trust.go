package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/orderflow/orderflow/test/stack"
)

// The trust phase measures what the trust layer costs, side by side in one
// run: the TLS gateway (HAProxy, deploy/gateway/haproxy.cfg) in front of
// the services against calling them directly, and the validation of access
// tokens with the services' decision cache (AUTH_CACHE_TTL, 30 s) against
// without it (AUTH_CACHE_TTL=0). Two stacks from the same binaries differ
// only in AUTH_CACHE_TTL; the gateway is in front of the first. Reads are
// measured by readbench in interleaved slices, orders by k6 in alternating
// rounds, and every process's CPU is sampled around each slice and round.
//
// The reads also measure the architecture's floor: a bare handler
// (loadtest/baseline/fixedjson) replaying inventory's cached answer, read
// directly and through a second gateway of the same configuration whose
// inventory backend is that handler. What the hop costs a service that does
// nothing is what it costs any service at least.

// trustOn is the shipped configuration, with inventory's rate limit off
// for the product reads (readbench is one client); it limits only those.
var trustOn = config{"inventory": {"INVENTORY_RATE_LIMIT=0"}}

// trustNoCache is trustOn with the token decision cache off everywhere:
// every request's token is verified (RS256 signature, claims) again.
var trustNoCache = config{
	"order":        {"AUTH_CACHE_TTL=0"},
	"inventory":    {"INVENTORY_RATE_LIMIT=0", "AUTH_CACHE_TTL=0"},
	"payment":      {"AUTH_CACHE_TTL=0"},
	"notification": {"AUTH_CACHE_TTL=0"},
}

// gatewayRole names the bench's own haproxy in the CPU profiles, and
// floorGatewayRole the second one, in front of the bare handler.
const (
	gatewayRole      = "haproxy (gateway)"
	floorGatewayRole = "haproxy (gateway → bare handler)"
)

// floorRole is the bare handler's binary, by which the CPU profiles name it.
const floorRole = "fixedjson"

// trustCase is one configuration of the phase: what the report calls it
// and the readbench target or k6 URL that measures it.
type trustCase struct {
	key, name, target string
}

func benchTrust(ctx context.Context, e *environment, r *report) error {
	on, err := e.stack(ctx, "trust", trustOn, "")
	if err != nil {
		return err
	}
	defer e.stop(on)
	off, err := e.stack(ctx, "trust-nocache", trustNoCache, "")
	if err != nil {
		return err
	}
	defer e.stop(off)
	gw, err := e.startGateway(ctx, on, "gateway", gatewayRole, "")
	if err != nil {
		return err
	}
	defer e.stopBackground(gw.cmd)

	// The floor: inventory's cached answer replayed by a bare handler,
	// behind a gateway that differs from gw only in its inventory upstream.
	answer, answerNote, err := e.recordAnswer(ctx, on.inventory+"/v1/products/SKU-00001")
	if err != nil {
		return err
	}
	bare, err := e.baseline(ctx, floorRole, "BASELINE_RESPONSE="+answer)
	if err != nil {
		return err
	}
	floorGW, err := e.startGateway(ctx, on, "gateway-floor", floorGatewayRole, bare)
	if err != nil {
		return err
	}
	defer e.stopBackground(floorGW.cmd)

	// What an uncached check costs depends on the issuer's key: say which.
	keyNote := ""
	if k, err := signingKeys(ctx, e.hydra.Issuer); err == nil {
		keyNote = "tokens signed with " + k
	} else {
		say("trust: the issuer's keys: %v", err)
	}

	// Product reads, all five in the same interleaved slices.
	conc := 2 * e.o.vus
	reads := []trustCase{
		{"direct", "product GET cached, direct, anonymous (no trust layer)", on.inventory},
		{"token", "product GET cached, direct, with a token (decision cache)", "auth+" + on.inventory},
		{"nocache", "product GET cached, direct, with a token, AUTH_CACHE_TTL=0", "auth+" + off.inventory},
		{"gateway", "product GET cached, gateway (HTTPS, HTTP/2), with a token", "auth+" + gw.base},
		{"gateway_h1", "product GET cached, gateway (HTTPS, HTTP/1.1 keep-alive), with a token", "h1+auth+" + gw.base},
		{"floor_direct", "floor: bare handler replaying that answer, direct, anonymous", bare},
		{"floor_gateway", "floor: the same bare handler, gateway (HTTPS, HTTP/2), with a token", "auth+" + floorGW.base},
	}
	tool := fmt.Sprintf("readbench, %d workers, interleaved", conc)
	args := []string{"-c", fmt.Sprint(conc), "-d", e.o.readDur.String(), "-slice", "2s", "-skus", "1000",
		"-cacert", gw.ca, "-tokens", e.tokensFile}
	if err := e.trustReads(ctx, r, "trust-reads", "trust_read_", reads, tool, args); err != nil {
		return err
	}
	r.noteKey("trust_read_floor_direct", answerNote)

	// GET /v1/orders/{id} as the order's customer: one order per customer
	// on each stack.
	onOrders, err := e.placeOrders(ctx, on, "trust-orders.txt")
	if err != nil {
		return err
	}
	offOrders, err := e.placeOrders(ctx, off, "trust-nocache-orders.txt")
	if err != nil {
		return err
	}
	orderReads := []trustCase{
		{"direct", "GET /v1/orders/{id}, direct (decision cache)", on.order},
		{"nocache", "GET /v1/orders/{id}, direct, AUTH_CACHE_TTL=0", off.order},
		{"gateway", "GET /v1/orders/{id}, gateway (HTTPS, HTTP/2)", gw.base},
	}
	args = []string{"-c", fmt.Sprint(conc), "-d", e.o.readDur.String(), "-slice", "2s", "-cacert", gw.ca,
		"-r", "direct=" + onOrders, "-r", "nocache=" + offOrders, "-r", "gateway=" + onOrders}
	if err := e.trustReads(ctx, r, "trust-order-reads", "trust_orderread_", orderReads, tool, args); err != nil {
		return err
	}

	err = e.trustOrders(ctx, r, []trustCase{
		{"direct", "orders end to end, direct (decision cache)", on.order},
		{"gateway", "orders end to end, gateway (HTTPS, HTTP/2)", gw.base},
		{"nocache", "orders end to end, direct, AUTH_CACHE_TTL=0", off.order},
	}, gw.ca)
	for _, k := range []string{"trust_read_nocache", "trust_orderread_nocache", "trust_orders_nocache"} {
		r.noteKey(k, keyNote)
	}
	return err
}

// signingKeys describes the keys of issuer's JWKS ("RSA 4096-bit (RS256)").
func signingKeys(ctx context.Context, issuer string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(issuer, "/")+"/.well-known/jwks.json", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct {
			Kty string `json:"kty"`
			Alg string `json:"alg"`
			N   string `json:"n"`
		} `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		return "", fmt.Errorf("jwks: %w", err)
	}
	seen := map[string]bool{}
	var out []string
	for _, k := range set.Keys {
		d := k.Kty
		if n, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(k.N, "=")); err == nil && len(n) > 0 {
			d = fmt.Sprintf("%s %d-bit", k.Kty, new(big.Int).SetBytes(n).BitLen())
		}
		if k.Alg != "" {
			d += " (" + k.Alg + ")"
		}
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	if len(out) == 0 {
		return "", errors.New("the JWKS has no keys")
	}
	return strings.Join(out, ", ") + " keys", nil
}

// noteKey adds note to the measurement key's note.
func (r *report) noteKey(key, note string) {
	if note == "" {
		return
	}
	for i := range r.Measurements {
		if r.Measurements[i].Key == key {
			r.Measurements[i].Note = strings.TrimPrefix(r.Measurements[i].Note+"; "+note, "; ")
		}
	}
}

// gateway is the bench's running HAProxy gateway.
type gateway struct {
	base string // https://127.0.0.1:port
	ca   string // the CA its certificate verifies against
	cmd  *exec.Cmd
}

// startGateway starts a gateway as shipped (deploy/gateway/haproxy.cfg, a
// certificate from scripts/tls.sh) in front of s on a free port, its log
// in name.log and its CPU under role, and waits until it routes product
// reads and orders. inventory, when set, replaces s's inventory as the
// upstream of the product routes (host:port or http://host:port).
func (e *environment) startGateway(ctx context.Context, s running, name, role, inventory string) (gateway, error) {
	if _, err := exec.LookPath("haproxy"); err != nil {
		return gateway{}, fmt.Errorf("haproxy is missing (apt-get install haproxy): %w", err)
	}
	tlsDir := filepath.Join(e.dir, "tls")
	if err := e.command(ctx, filepath.Join(e.logDir, "tls.log"), "bash", "scripts/tls.sh", tlsDir); err != nil {
		return gateway{}, fmt.Errorf("scripts/tls.sh: %w", err)
	}
	port, err1 := stack.FreePort()
	identity, err2 := stack.FreePort() // nothing listens: the route is unused here
	if err1 != nil || err2 != nil {
		return gateway{}, fmt.Errorf("free ports: %v %v", err1, err2)
	}
	hostPort := func(u string) string { return strings.TrimSuffix(strings.TrimPrefix(u, "http://"), "/") }
	if inventory == "" {
		inventory = s.inventory
	}
	env := []string{fmt.Sprintf("GATEWAY_ADDR=127.0.0.1:%d", port), "GATEWAY_CERT=" + filepath.Join(tlsDir, "server.pem"),
		"ORDER_UPSTREAM=" + hostPort(s.order), "INVENTORY_UPSTREAM=" + hostPort(inventory),
		"NOTIFICATION_UPSTREAM=" + hostPort(s.notification), fmt.Sprintf("IDENTITY_UPSTREAM=127.0.0.1:%d", identity),
		"HYDRA_UPSTREAM=" + hostPort(e.hydra.Issuer), "GATEWAY_SOURCE=" + gatewaySource}
	cfg := "deploy/gateway/haproxy.cfg"
	checkLog := filepath.Join(e.logDir, name+"-check.log")
	if err := e.commandEnv(ctx, env, checkLog, "haproxy", "-c", "-q", "-f", cfg); err != nil {
		return gateway{}, fmt.Errorf("haproxy -c %s: %w (log %s)", cfg, err, checkLog)
	}
	say("starting %s (HAProxy, %s) on https://127.0.0.1:%d, products from %s", name, cfg, port, hostPort(inventory))
	cmd, err := e.startBackground(name, env, "haproxy", "-db", "-f", cfg)
	if err != nil {
		return gateway{}, err
	}
	e.nameProcess(cmd.Process.Pid, role)
	g := gateway{base: fmt.Sprintf("https://127.0.0.1:%d", port), ca: filepath.Join(tlsDir, "ca.pem"), cmd: cmd}
	client, err := httpsClient(g.ca)
	if err != nil {
		return g, err
	}
	token := e.tokens[e.customers[0]]
	deadline := time.Now().Add(30 * time.Second)
	for {
		product, _ := get(ctx, client, g.base+"/v1/products/SKU-00001", "")
		orders, _ := get(ctx, client, g.base+"/v1/orders?limit=1", token)
		if product == http.StatusOK && orders == http.StatusOK {
			return g, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return g, fmt.Errorf("%s does not route within 30s: product %d, orders %d (log %s)",
				name, product, orders, filepath.Join(e.logDir, name+".log"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// recordAnswer reads url (inventory's product read) until inventory answers
// it from its cache, and writes that answer's headers and body to a file
// for the bare handler (loadtest/baseline/fixedjson) to replay. It returns
// the file and a note saying what was recorded.
func (e *environment) recordAnswer(ctx context.Context, url string) (string, string, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return "", "", err
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", "", fmt.Errorf("record the cached answer: %w", err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return "", "", fmt.Errorf("record the cached answer: %w", err)
		}
		if resp.StatusCode == http.StatusOK && resp.Header.Get("X-Cache") == "HIT" {
			if resp.Header.Get("ETag") == "" || resp.Header.Get("Cache-Control") == "" {
				return "", "", fmt.Errorf("GET %s: a cached answer without ETag or Cache-Control: %v", url, resp.Header)
			}
			var b bytes.Buffer
			if err := resp.Header.Write(&b); err != nil {
				return "", "", err
			}
			b.WriteString("\r\n")
			b.Write(body)
			path := filepath.Join(e.dir, "cached-answer.txt")
			if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
				return "", "", err
			}
			var names []string
			for k := range resp.Header {
				if k != "Date" && k != "Content-Length" {
					names = append(names, k)
				}
			}
			slices.Sort(names)
			return path, fmt.Sprintf("replays inventory's cached answer to GET /v1/products/SKU-00001: %d-byte body; %s",
				len(body), strings.Join(names, ", ")), nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return "", "", fmt.Errorf("GET %s = %d, X-Cache %q: no cached answer within 30s", url, resp.StatusCode, resp.Header.Get("X-Cache"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stopBackground stops one helper before the end of the run.
func (e *environment) stopBackground(cmd *exec.Cmd) {
	e.mu.Lock()
	for i, p := range e.procs {
		if p == cmd {
			e.procs = append(e.procs[:i], e.procs[i+1:]...)
			break
		}
	}
	e.mu.Unlock()
	terminate(cmd)
}

// terminate stops a helper's process group: SIGTERM, SIGKILL after 10 s.
func terminate(p *exec.Cmd) {
	_ = syscall.Kill(-p.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

func httpsClient(caFile string) (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no certificate", caFile)
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}}, nil
}

// get returns the status of GET url, with token when it is set.
func get(ctx context.Context, c *http.Client, url, token string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// placeOrders places one order per load customer on s and writes
// readbench's request file of them (-r): "/v1/orders/{id} token" lines.
func (e *environment) placeOrders(ctx context.Context, s running, file string) (string, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	var (
		mu    sync.Mutex
		lines []string
		errs  []error
		wg    sync.WaitGroup
	)
	sem := make(chan struct{}, 8)
	for i, c := range e.customers {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			id, err := placeOrder(ctx, client, s.order, e.tokens[c], fmt.Sprintf("SKU-%05d", 1+i%1000))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("order of %s: %w", c, err))
				return
			}
			lines = append(lines, "/v1/orders/"+id+" "+e.tokens[c])
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return "", fmt.Errorf("%d of %d orders failed, first: %w", len(errs), len(e.customers), errs[0])
	}
	path := filepath.Join(e.dir, file)
	return path, os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}

func placeOrder(ctx context.Context, c *http.Client, base, token, sku string) (string, error) {
	body := fmt.Sprintf(`{"items":[{"sku":%q,"quantity":1}],"payment_method":"pm_card_ok"}`, sku)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/orders", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Idempotency-Key", "bench-trust-"+randomHex()+randomHex())
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("POST /v1/orders = %d %s", resp.StatusCode, b)
	}
	var o struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(b, &o); err != nil || o.ID == "" {
		return "", fmt.Errorf("POST /v1/orders: no id in %s", b)
	}
	return o.ID, nil
}

// trustReads runs readbench over cases (their targets interleaved in
// slices) and adds a measurement and a CPU profile per case under
// prefix+key.
func (e *environment) trustReads(ctx context.Context, r *report, name, prefix string, cases []trustCase, tool string, args []string) error {
	for _, c := range cases {
		args = append(args, "-t", c.key+"="+c.target)
	}
	say("readbench: %d targets, %s each, interleaved; CPU sampled around every slice", len(cases), e.o.readDur)
	rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	out, cpu, err := e.readbenchCPU(rctx, name, args)
	fmt.Print(indent(out))
	if err != nil {
		return err
	}
	results := parseReadbench(out)
	for _, c := range cases {
		kv, ok := results[c.key]
		if !ok {
			return fmt.Errorf("readbench printed no result for %s (log %s)", c.key, filepath.Join(e.logDir, name+".log"))
		}
		m := readMeasurement(kv, prefix+c.key, c.name, "trust", tool)
		var notes []string
		if req := kv.num("requests"); req > 0 {
			// The floor's handler replays one recorded HIT: no cache to report.
			if h := kv.num("hits"); h > 0 && !strings.HasPrefix(c.key, "floor_") {
				notes = append(notes, fmt.Sprintf("cache hit ratio %.1f%%", 100*h/req))
			}
			if strings.Contains(c.target, "https://") {
				notes = append(notes, fmt.Sprintf("HTTP/2 %.0f%% of responses", 100*kv.num("http2")/req))
			}
		}
		m.Note = strings.Join(notes, "; ")
		r.add(m)
		if t := cpu[c.key]; t != nil {
			t.ops = m.Requests
			r.setCPU(prefix+c.key, t.profile())
		}
	}
	return nil
}

// readbenchCPU runs readbench with -marks: at each MARK line it samples
// every process's CPU time, then lets readbench go on. It returns
// readbench's other output and, per target, what the machine spent during
// that target's slices.
func (e *environment) readbenchCPU(ctx context.Context, name string, args []string) (string, map[string]*cpuTally, error) {
	logPath := filepath.Join(e.logDir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return "", nil, err
	}
	defer logFile.Close()
	cmd := exec.CommandContext(ctx, filepath.Join(e.dir, "readbench"), append([]string{"-marks"}, args...)...)
	cmd.Stderr = logFile
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	names := e.procNames()
	tallies := map[string]*cpuTally{}
	var begin cpuSample
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) == 3 && f[0] == "MARK" {
			s := sampleCPU(names)
			switch f[1] {
			case "begin":
				begin = s
			case "end":
				if tallies[f[2]] == nil {
					tallies[f[2]] = &cpuTally{}
				}
				tallies[f[2]].add(begin, s)
			}
			_, _ = io.WriteString(stdin, "\n")
			continue
		}
		out.WriteString(line + "\n")
		fmt.Fprintln(logFile, line)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		return out.String(), nil, fmt.Errorf("readbench: %w (log %s)", err, logPath)
	}
	return out.String(), tallies, nil
}

// trustOrders places orders with k6 (bench.js, orders only, closed model)
// against each case in alternating rounds — the order reversed every other
// round, so a drift of the machine's load hits all alike — after an
// unmeasured warm-up of each. Each case gets -duration in all, in
// -trust-rounds rounds. Percentiles are the rounds' own, averaged
// weighted by orders (k6 summaries cannot be merged exactly).
func (e *environment) trustOrders(ctx context.Context, r *report, cases []trustCase, ca string) error {
	rounds := max(1, e.o.trustRounds)
	round := max(5*time.Second, (e.o.dur / time.Duration(rounds)).Round(time.Second))
	vars := func(c trustCase, d time.Duration) map[string]string {
		return e.k6Auth(map[string]string{"ORDER_URL": c.target, "WORKLOAD": "orders", "DECLINE_RATE": "0",
			"MODE": "closed", "VUS": fmt.Sprint(e.o.vus), "DURATION": d.String()})
	}
	env := []string{"SSL_CERT_FILE=" + ca} // the gateway's CA, for k6's TLS
	limit := round + 90*time.Second
	for _, c := range cases {
		if _, err := e.runK6Env(ctx, env, "trust-warm-"+c.key, filepath.Join(k6Dir, "bench.js"), vars(c, 3*time.Second), limit); err != nil {
			return err
		}
	}
	type sum struct {
		orders, seconds, requests, unexpected, http2 float64
		p50, p95, p99                                float64 // weighted by orders
		cpu                                          cpuTally
	}
	sums := map[string]*sum{}
	for i := range rounds {
		order := cases
		if i%2 == 1 {
			order = make([]trustCase, len(cases))
			for j, c := range cases {
				order[len(cases)-1-j] = c
			}
		}
		for _, c := range order {
			say("trust: orders, round %d of %d, %s", i+1, rounds, c.key)
			if sums[c.key] == nil {
				sums[c.key] = &sum{}
			}
			x := sums[c.key]
			var s k6Summary
			err := x.cpu.measure(e.procNames(), func() (int64, error) {
				var err error
				s, err = e.runK6Env(ctx, env, fmt.Sprintf("trust-orders-%s-%d", c.key, i+1), filepath.Join(k6Dir, "bench.js"), vars(c, round), limit)
				return int64(s.value("orders_created", "count")), err
			})
			if err != nil {
				return err
			}
			n, rate := s.value("orders_created", "count"), s.value("orders_created", "rate")
			if n <= 0 || rate <= 0 {
				return fmt.Errorf("trust: no order completed in round %d against %s", i+1, c.key)
			}
			reqs := s.value("http_reqs", "count")
			x.orders += n
			x.seconds += n / rate
			x.requests += reqs
			x.unexpected += s.value("unexpected", "rate") * reqs
			x.http2 += s.value("http2", "rate") * reqs
			x.p50 += s.value("order_duration", "med") * n
			x.p95 += s.value("order_duration", "p(95)") * n
			x.p99 += s.value("order_duration", "p(99)") * n
		}
	}
	tool := fmt.Sprintf("k6 closed model, %d VUs, %d alternating rounds of %s", e.o.vus, rounds, round)
	for _, c := range cases {
		x := sums[c.key]
		m := measurement{Key: "trust_orders_" + c.key, Name: c.name, Group: "trust", Tool: tool,
			RPS: x.orders / x.seconds, P50: x.p50 / x.orders, P95: x.p95 / x.orders, P99: x.p99 / x.orders,
			ErrorRate: x.unexpected / x.requests, Requests: int64(x.requests),
			Note: fmt.Sprintf("HTTP/2 %.0f%% of orders; percentiles: the rounds', weighted by orders", 100*x.http2/x.requests)}
		m.OrderRPS, m.OrderP50, m.OrderP95, m.OrderP99 = m.RPS, m.P50, m.P95, m.P99
		r.add(m)
		r.setCPU(m.Key, x.cpu.profile())
	}
	return nil
}

// readResult is one RESULT line of readbench, by field.
type readResult map[string]string

func (kv readResult) num(k string) float64 {
	v, _ := strconv.ParseFloat(kv[k], 64)
	return v
}

// parseReadbench returns readbench's RESULT lines by target name.
func parseReadbench(out string) map[string]readResult {
	results := map[string]readResult{}
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "RESULT ") {
			continue
		}
		kv := readResult{}
		for _, f := range strings.Fields(line)[1:] {
			k, v, _ := strings.Cut(f, "=")
			kv[k] = v
		}
		results[kv["name"]] = kv
	}
	return results
}

// readMeasurement is a RESULT line as a measurement.
func readMeasurement(kv readResult, key, name, group, tool string) measurement {
	req := kv.num("requests")
	m := measurement{Key: key, Name: name, Group: group, RPS: kv.num("rps"),
		P50: kv.num("p50_ms"), P95: kv.num("p95_ms"), P99: kv.num("p99_ms"), Requests: int64(req), Tool: tool}
	if req > 0 {
		m.ErrorRate = kv.num("errors") / (req + kv.num("errors"))
	}
	return m
}

func (r *report) setCPU(key string, p cpuProfile) {
	if r.CPU == nil {
		r.CPU = map[string]cpuProfile{}
	}
	r.CPU[key] = p
}

// serverSide is a profile's CPU per operation without the load generator,
// this program and other work on the machine ("other…"): what serving the
// requests cost (in production the clients run elsewhere).
func (p cpuProfile) serverSide() float64 {
	var sum float64
	for _, sh := range p.Shares {
		if sh.Role != loadGenerator && sh.Role != benchRole && sh.Role != "other" && !strings.HasPrefix(sh.Role, "other: ") {
			sum += sh.MsPer
		}
	}
	return sum
}

// trustCPUTable writes one table of CPU per request by process, a column
// per measurement key.
func (r *report) trustCPUTable(b *bytes.Buffer, unit string, keys []string, heads []string) {
	var have []string
	var cols []string
	for i, k := range keys {
		if _, ok := r.CPU[k]; ok {
			have = append(have, k)
			cols = append(cols, heads[i])
		}
	}
	if len(have) == 0 {
		return
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("| process (ms per %s) | %s |\n|---|%s\n", unit, strings.Join(cols, " | "), strings.Repeat("---:|", len(cols)))
	seen := map[string]bool{}
	var roles []string
	for _, k := range have {
		for _, sh := range r.CPU[k].Shares {
			if !seen[sh.Role] {
				seen[sh.Role] = true
				roles = append(roles, sh.Role)
			}
		}
	}
	for _, role := range roles {
		var cells []string
		for _, k := range have {
			if sh, ok := r.CPU[k].share(role); ok {
				cells = append(cells, fmt.Sprintf("%.3f", sh.MsPer))
			} else {
				cells = append(cells, "–")
			}
		}
		w("| %s | %s |\n", role, strings.Join(cells, " | "))
	}
	var totals, servers, ops []string
	for _, k := range have {
		p := r.CPU[k]
		totals = append(totals, fmt.Sprintf("**%.3f**", p.TotalMs))
		servers = append(servers, fmt.Sprintf("%.3f", p.serverSide()))
		ops = append(ops, fmt.Sprint(p.Ops))
	}
	w("| **total** | %s |\n", strings.Join(totals, " | "))
	w("| serving: all but the load generator, this program and other work | %s |\n", strings.Join(servers, " | "))
	w("| %ss measured | %s |\n\n", unit, strings.Join(ops, " | "))
}

// cost is the share of throughput lost from base to with, as a fraction.
func cost(with, base measurement) float64 {
	if base.RPS <= 0 {
		return math.NaN()
	}
	return 1 - with.RPS/base.RPS
}
