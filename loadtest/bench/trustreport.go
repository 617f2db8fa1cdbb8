package main

import (
	"bytes"
	"fmt"
	"strings"
)

// The trust phase's part of the report: ratios, targets, findings and the
// "The cost of trust" section.

// trustKeys are the phase's measurements.
type trustKeys struct {
	ordersDirect, ordersGateway, ordersNoCache          measurement
	readDirect, readToken, readNoCache                  measurement
	readGateway, readGatewayH1                          measurement
	readFloorDirect, readFloorGateway                   measurement
	orderReadDirect, orderReadNoCache, orderReadGateway measurement
	ok                                                  map[string]bool
}

func (r *report) trustFigures() trustKeys {
	t := trustKeys{ok: map[string]bool{}}
	for key, m := range map[string]*measurement{
		"trust_orders_direct": &t.ordersDirect, "trust_orders_gateway": &t.ordersGateway,
		"trust_orders_nocache": &t.ordersNoCache, "trust_read_direct": &t.readDirect,
		"trust_read_token": &t.readToken, "trust_read_nocache": &t.readNoCache,
		"trust_read_gateway": &t.readGateway, "trust_read_gateway_h1": &t.readGatewayH1,
		"trust_orderread_direct": &t.orderReadDirect, "trust_orderread_nocache": &t.orderReadNoCache,
		"trust_orderread_gateway": &t.orderReadGateway,
		"trust_read_floor_direct": &t.readFloorDirect, "trust_read_floor_gateway": &t.readFloorGateway,
	} {
		if x, ok := r.get(key); ok && x.RPS > 0 {
			*m, t.ok[key] = x, true
		}
	}
	return t
}

func (t trustKeys) has(keys ...string) bool {
	for _, k := range keys {
		if !t.ok[k] {
			return false
		}
	}
	return true
}

// The trust targets (the issue's): the whole trust layer costs at most
// this share of the throughput.
const (
	trustOrderBudget = 0.15
	trustReadBudget  = 0.25
)

const (
	trustOrderTarget = "trust layer's cost to order throughput: gateway (HTTPS, HTTP/2) + token checks vs direct"
	trustReadTarget  = "trust layer's cost to cached product-read throughput: gateway (HTTPS, HTTP/2) + token check vs direct anonymous"
)

func (r *report) evaluateTrust(addRatio func(string, float64, string), addTarget func(string, string, string, bool, ...measurement)) {
	t := r.trustFigures()
	if t.has("trust_orders_direct", "trust_orders_gateway") {
		addRatio("trust: orders through the gateway / direct (throughput)", t.ordersGateway.RPS/t.ordersDirect.RPS, "%.3f")
		addRatio("trust: order p95 through the gateway − direct", t.ordersGateway.P95-t.ordersDirect.P95, "%+.1f ms")
	}
	if t.has("trust_orders_direct", "trust_orders_nocache") {
		addRatio("trust: orders with AUTH_CACHE_TTL=0 / with the decision cache (throughput)", t.ordersNoCache.RPS/t.ordersDirect.RPS, "%.3f")
	}
	if t.has("trust_read_direct", "trust_read_gateway") {
		addRatio("trust: cached product GET, gateway HTTP/2 with a token / direct anonymous (throughput)", t.readGateway.RPS/t.readDirect.RPS, "%.3f")
	}
	if t.has("trust_read_direct", "trust_read_gateway_h1") {
		addRatio("trust: cached product GET, gateway HTTP/1.1 with a token / direct anonymous (throughput)", t.readGatewayH1.RPS/t.readDirect.RPS, "%.3f")
	}
	if t.has("trust_read_token", "trust_read_gateway") {
		addRatio("trust: cached product GET with a token, gateway HTTP/2 / direct (throughput: gateway and TLS alone)", t.readGateway.RPS/t.readToken.RPS, "%.3f")
	}
	if t.has("trust_read_direct", "trust_read_token") {
		addRatio("trust: cached product GET, direct, with a token / anonymous (throughput: the cached token check)", t.readToken.RPS/t.readDirect.RPS, "%.3f")
	}
	if t.has("trust_read_token", "trust_read_nocache") {
		addRatio("trust: cached product GET with a token, AUTH_CACHE_TTL=0 / with the decision cache (throughput)", t.readNoCache.RPS/t.readToken.RPS, "%.3f")
	}
	if t.has("trust_read_floor_direct", "trust_read_floor_gateway") {
		addRatio("trust floor: bare handler, gateway HTTP/2 with a token / direct anonymous (throughput)", t.readFloorGateway.RPS/t.readFloorDirect.RPS, "%.3f")
	}
	if t.has("trust_orderread_direct", "trust_orderread_nocache") {
		addRatio("trust: GET /v1/orders/{id}, AUTH_CACHE_TTL=0 / with the decision cache (throughput)", t.orderReadNoCache.RPS/t.orderReadDirect.RPS, "%.3f")
	}
	if t.has("trust_orderread_direct", "trust_orderread_gateway") {
		addRatio("trust: GET /v1/orders/{id} through the gateway / direct (throughput)", t.orderReadGateway.RPS/t.orderReadDirect.RPS, "%.3f")
	}

	// One token check without the cache, in CPU: what the service spent
	// per request more with AUTH_CACHE_TTL=0 (one check per read).
	check := func(name, role, with, base string) {
		a, okA := r.CPU[with]
		b, okB := r.CPU[base]
		if !okA || !okB {
			return
		}
		x, _ := a.share(role)
		y, _ := b.share(role)
		addRatio(name, x.MsPer-y.MsPer, "%.3f ms")
	}
	check("trust: CPU of one uncached token check, inventory (product read, AUTH_CACHE_TTL=0 − cache)", "inventory",
		"trust_read_nocache", "trust_read_token")
	check("trust: CPU of one uncached token check, order (GET /v1/orders/{id}, AUTH_CACHE_TTL=0 − cache)", "order",
		"trust_orderread_nocache", "trust_orderread_direct")
	check("trust: CPU of the cached token check, inventory (product read, token − anonymous)", "inventory",
		"trust_read_token", "trust_read_direct")
	// The gateway's own CPU per request: steadier than the throughput
	// ratios on a machine shared with other work.
	for _, g := range []struct{ name, key, role string }{
		{"cached product read (HTTP/2)", "trust_read_gateway", gatewayRole},
		{"cached product read (HTTP/1.1)", "trust_read_gateway_h1", gatewayRole},
		{"bare handler's read (HTTP/2, the floor)", "trust_read_floor_gateway", floorGatewayRole},
		{"GET /v1/orders/{id} (HTTP/2)", "trust_orderread_gateway", gatewayRole},
		{"order (HTTP/2)", "trust_orders_gateway", gatewayRole},
	} {
		if p, ok := r.CPU[g.key]; ok {
			if sh, ok := p.share(g.role); ok {
				addRatio("trust: haproxy's CPU per "+g.name+" through the gateway", sh.MsPer, "%.3f ms")
			}
		}
	}

	if t.has("trust_orders_direct", "trust_orders_gateway") {
		c := cost(t.ordersGateway, t.ordersDirect)
		addTarget(trustOrderTarget, fmt.Sprintf("≤ %.0f%%", 100*trustOrderBudget),
			fmt.Sprintf("%.1f%% (%.0f vs %.0f orders/s; p95 %.1f vs %.1f ms)", 100*c, t.ordersGateway.RPS,
				t.ordersDirect.RPS, t.ordersGateway.P95, t.ordersDirect.P95),
			c <= trustOrderBudget, t.ordersGateway, t.ordersDirect)
	}
	if t.has("trust_read_direct", "trust_read_gateway") {
		c := cost(t.readGateway, t.readDirect)
		addTarget(trustReadTarget, fmt.Sprintf("≤ %.0f%%", 100*trustReadBudget),
			fmt.Sprintf("%.1f%% (%.0f vs %.0f req/s; p95 %.2f vs %.2f ms)", 100*c, t.readGateway.RPS,
				t.readDirect.RPS, t.readGateway.P95, t.readDirect.P95),
			c <= trustReadBudget, t.readGateway, t.readDirect)
	}
}

// trustFindings explains a missed trust target with the run's CPU
// profiles: where the extra CPU of a request through the gateway went.
func (r *report) trustFindings() {
	missed := map[string]bool{}
	for _, x := range r.Targets {
		missed[x.Name] = !x.Met
	}
	t := r.trustFigures()
	explain := func(what, unit string, with, base measurement, budget float64, services ...string) {
		d, okD := r.CPU[base.Key]
		g, okG := r.CPU[with.Key]
		f := fmt.Sprintf("%s through the gateway: %.0f/s against %.0f/s direct, %.0f%% less (the budget is %.0f%%).",
			what, with.RPS, base.RPS, 100*cost(with, base), 100*budget)
		if okD && okG {
			share := func(p cpuProfile, role string) float64 { s, _ := p.share(role); return s.MsPer }
			hp := share(g, gatewayRole)
			lg := share(g, loadGenerator) - share(d, loadGenerator)
			var svcD, svcG float64
			for _, s := range services {
				svcD, svcG = svcD+share(d, s), svcG+share(g, s)
			}
			f += fmt.Sprintf(" Per %s the whole machine spent %.3f ms of CPU directly and %.3f ms through the gateway. "+
				"haproxy spent %.3f ms (TLS 1.3, HTTP/2, the route table, its log line) against %.3f ms that %s "+
				"spent on the %s directly (%+.3f ms through the gateway, the token check included); the load generator "+
				"%+.3f ms (TLS and HTTP/2 at the client, which in production runs on other machines). Serving one "+
				"(all but the load generator and other work) cost %.3f ms directly and %.3f ms through the gateway (%+.0f%%).",
				unit, d.TotalMs, g.TotalMs, hp, svcD, strings.Join(services, ", "), unit, svcG-svcD, lg,
				d.serverSide(), g.serverSide(), 100*(g.serverSide()/d.serverSide()-1))
			if cpus := float64(r.Machine.CPUs); cpus > 0 {
				f += fmt.Sprintf(" On %d CPUs shared by all of them, %.3f ms per %s caps the rate at about %.0f/s; "+
					"the gateway's hop is a fixed cost per request, so the cheaper the request, the larger its share.",
					r.Machine.CPUs, g.TotalMs, unit, 1000*cpus/g.TotalMs)
			}
		}
		r.Findings = append(r.Findings, f)
	}
	if missed[trustReadTarget] && t.has("trust_read_direct", "trust_read_gateway") {
		explain("Cached product reads", "read", t.readGateway, t.readDirect, trustReadBudget, "inventory")
		if f, ok := r.trustFloor(); ok {
			r.Findings = append(r.Findings, "The floor (\"The cost of trust\", a bare handler behind the same gateway): "+f.verdict())
		}
	}
	if missed[trustOrderTarget] && t.has("trust_orders_direct", "trust_orders_gateway") {
		explain("Orders", "order", t.ordersGateway, t.ordersDirect, trustOrderBudget, "order", "inventory", "payment", "notification")
	}
}

// trustMarkdown writes "The cost of trust" when the run measured it.
func (r *report) trustMarkdown(b *bytes.Buffer) {
	var rows []measurement
	for _, m := range r.Measurements {
		if m.Group == "trust" {
			rows = append(rows, m)
		}
	}
	if len(rows) == 0 {
		return
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## The cost of trust\n\n")
	w("What the trust layer costs, side by side in one run. Two stacks from the same binaries differ only in\n")
	w("`AUTH_CACHE_TTL`: 30 s (the default: a token's decision is cached) and 0 (every request's token is verified\n")
	w("again, RS256 signature and claims; pkg/auth's BenchmarkVerify puts that at about 70 µs with its 2048-bit\n")
	w("test key, against 83 ns for a cache hit; the notes say which keys Hydra signed with here, and a signature\n")
	w("check's cost grows steeply with the key). The gateway runs as shipped (HAProxy 2.6 with deploy/gateway/haproxy.cfg: TLS 1.3 with a\n")
	w("certificate from scripts/tls.sh, HTTP/2 by ALPN, one log line per request) in front of the first; it\n")
	w("connects from 127.0.0.2, which the services trust for X-Forwarded-For (`TRUSTED_PROXIES`), as in make dev.\n")
	w("**Direct** is plain HTTP/1.1 keep-alive to the service's own port. Every order route needs a token, so\n")
	w("direct orders are checked too, with the cache: the order comparison is the gateway and TLS on top of\n")
	w("cached token checks. Product reads are anonymous unless the client sends a token (inventory then checks\n")
	w("it), so **direct, anonymous** is a read with no trust layer at all, and the read target compares it with a\n")
	w("read through the gateway with a token.\n\n")
	w("Reads are measured by loadtest/readbench, workers back to back, all targets of one kind in the same\n")
	w("interleaved 2 s slices; through the gateway each worker holds its own TLS connection (HTTP/2, or HTTP/1.1\n")
	w("keep-alive where it says so), as separate clients would. `GET /v1/orders/{id}` reads one of 100 orders as\n")
	w("its customer. Orders are k6 (bench.js, orders only, closed model) in alternating rounds, the order of the\n")
	w("configurations reversed every other round. The CPU time of every process is sampled around each slice and\n")
	w("round and divided by the requests completed. Inventory's rate limit is off on both stacks (it limits only\n")
	w("product reads, and readbench is one client); everything else is the shipped configuration. The two\n")
	w("**floor** rows are a bare handler replaying inventory's cached answer, directly and behind a second gateway\n")
	w("(below).\n\n")
	w("| measurement | req/s | p50 ms | p95 ms | p99 ms | errors | load | note |\n|---|---:|---:|---:|---:|---:|---|---|\n")
	for _, x := range rows {
		w("| %s | %s | %s | %s | %s | %.2f%% | %s | %s |\n", x.Name, rps(x.RPS), ms(x.P50), ms(x.P95), ms(x.P99),
			100*x.ErrorRate, x.Tool, x.Note)
	}
	w("\n")
	t := r.trustFigures()
	if t.has("trust_read_direct", "trust_read_gateway") || t.has("trust_orders_direct", "trust_orders_gateway") {
		w("The trust layer's cost (1 − throughput with it / without it), against the issue's budgets:\n\n")
		w("| comparison | cost | budget |\n|---|---:|---:|\n")
		row := func(name string, with, base measurement, budget string) {
			w("| %s | %.1f%% | %s |\n", name, 100*cost(with, base), budget)
		}
		if t.has("trust_orders_direct", "trust_orders_gateway") {
			row("orders: gateway (HTTP/2) vs direct", t.ordersGateway, t.ordersDirect, fmt.Sprintf("≤ %.0f%%", 100*trustOrderBudget))
		}
		if t.has("trust_orders_direct", "trust_orders_nocache") {
			row("orders: AUTH_CACHE_TTL=0 vs the decision cache", t.ordersNoCache, t.ordersDirect, "–")
		}
		if t.has("trust_read_direct", "trust_read_gateway") {
			row("cached product reads: gateway (HTTP/2) with a token vs direct anonymous", t.readGateway, t.readDirect,
				fmt.Sprintf("≤ %.0f%%", 100*trustReadBudget))
		}
		if t.has("trust_read_direct", "trust_read_gateway_h1") {
			row("cached product reads: gateway (HTTP/1.1) with a token vs direct anonymous", t.readGatewayH1, t.readDirect, "–")
		}
		if t.has("trust_read_direct", "trust_read_token") {
			row("cached product reads: the token check alone (direct, token vs anonymous)", t.readToken, t.readDirect, "–")
		}
		if t.has("trust_read_token", "trust_read_gateway") {
			row("cached product reads: the gateway and TLS alone (both with a token)", t.readGateway, t.readToken, "–")
		}
		if t.has("trust_read_token", "trust_read_nocache") {
			row("cached product reads: AUTH_CACHE_TTL=0 vs the decision cache", t.readNoCache, t.readToken, "–")
		}
		if t.has("trust_read_floor_direct", "trust_read_floor_gateway") {
			row("floor: bare handler, gateway (HTTP/2) with a token vs direct anonymous", t.readFloorGateway, t.readFloorDirect, "–")
		}
		if t.has("trust_orderread_direct", "trust_orderread_gateway") {
			row("GET /v1/orders/{id}: gateway (HTTP/2) vs direct", t.orderReadGateway, t.orderReadDirect, "–")
		}
		if t.has("trust_orderread_direct", "trust_orderread_nocache") {
			row("GET /v1/orders/{id}: AUTH_CACHE_TTL=0 vs the decision cache", t.orderReadNoCache, t.orderReadDirect, "–")
		}
		w("\n")
	}
	if f, ok := r.trustFloor(); ok {
		f.markdown(b)
	}
	w("### CPU per request, by process\n\n")
	w("Milliseconds of CPU (user + system, from /proc) each process spent per request completed, in the same\n")
	w("slices and rounds as the figures above. The load generator (readbench or k6) shares the machine; the row\n")
	w("without it is what serving the requests cost.\n\n")
	r.trustCPUTable(b, "read", []string{"trust_read_direct", "trust_read_token", "trust_read_nocache", "trust_read_gateway",
		"trust_read_gateway_h1", "trust_read_floor_direct", "trust_read_floor_gateway"},
		[]string{"direct, anonymous", "direct, token", "direct, token, cache off", "gateway HTTP/2, token",
			"gateway HTTP/1.1, token", "floor: bare, direct", "floor: bare, gateway HTTP/2, token"})
	r.trustCPUTable(b, "order read", []string{"trust_orderread_direct", "trust_orderread_nocache", "trust_orderread_gateway"},
		[]string{"direct", "direct, cache off", "gateway HTTP/2"})
	r.trustCPUTable(b, "order", []string{"trust_orders_direct", "trust_orders_nocache", "trust_orders_gateway"},
		[]string{"direct", "direct, cache off", "gateway HTTP/2"})
}
