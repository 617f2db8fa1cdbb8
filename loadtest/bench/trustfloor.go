package main

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
)

// trustFloor is what the bare handler behind the gateway says about the
// cached-read target. The bare handler is the cheapest service there can
// be, so its loss is the most the hop can take from any service; what
// carries over to a real one is the hop's CPU per request. On a machine
// whose CPUs are the bottleneck, a read that costs C ms of CPU directly
// and Δ more through the gateway loses Δ/(C+Δ) of its throughput, so a
// budget b allows Δ ≤ C·b/(1−b).
type trustFloor struct {
	bareDirect, bareGateway measurement
	realDirect, realGateway measurement
	// CPU per read, ms, of the processes on the read path and of the load
	// generator, which shares the CPUs with them (barePath, realPath).
	bareDirectMs, bareGatewayMs float64
	realDirectMs, realGatewayMs float64
	// The same without the load generator: what the servers would spend
	// with their clients on other machines.
	bareDirectServe, bareGatewayServe float64
	realDirectServe, realGatewayServe float64
	haproxyBare, haproxyReal          float64
	// Where the real read's extra CPU went, by process, gateway − direct.
	realExtra map[string]float64
}

// The processes on each read path. Other work on this shared machine (its
// own PostgreSQL backends included) moves the other rows of the CPU
// profiles by as much as the hop costs, so the floor counts only these.
var (
	barePath = []string{floorRole, floorGatewayRole, "kernel threads"}
	realPath = []string{"inventory", "redis", "postgres", gatewayRole, "kernel threads"}
)

// trustFloor returns the floor when the run measured it and its CPU.
func (r *report) trustFloor() (trustFloor, bool) {
	t := r.trustFigures()
	if !t.has("trust_read_floor_direct", "trust_read_floor_gateway", "trust_read_direct", "trust_read_gateway") {
		return trustFloor{}, false
	}
	bd, ok1 := r.CPU["trust_read_floor_direct"]
	bg, ok2 := r.CPU["trust_read_floor_gateway"]
	rd, ok3 := r.CPU["trust_read_direct"]
	rg, ok4 := r.CPU["trust_read_gateway"]
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return trustFloor{}, false
	}
	share := func(p cpuProfile, role string) float64 { s, _ := p.share(role); return s.MsPer }
	serve := func(p cpuProfile, path []string) float64 {
		var sum float64
		for _, role := range path {
			sum += share(p, role)
		}
		return sum
	}
	f := trustFloor{
		bareDirect: t.readFloorDirect, bareGateway: t.readFloorGateway,
		realDirect: t.readDirect, realGateway: t.readGateway,
		bareDirectServe: serve(bd, barePath), bareGatewayServe: serve(bg, barePath),
		realDirectServe: serve(rd, realPath), realGatewayServe: serve(rg, realPath),
		haproxyBare: share(bg, floorGatewayRole), haproxyReal: share(rg, gatewayRole),
		realExtra: map[string]float64{},
	}
	f.bareDirectMs = f.bareDirectServe + share(bd, loadGenerator)
	f.bareGatewayMs = f.bareGatewayServe + share(bg, loadGenerator)
	f.realDirectMs = f.realDirectServe + share(rd, loadGenerator)
	f.realGatewayMs = f.realGatewayServe + share(rg, loadGenerator)
	for _, role := range append(realPath, loadGenerator) {
		f.realExtra[role] = share(rg, role) - share(rd, role)
	}
	return f, f.bareDirectMs > 0 && f.realDirectMs > 0
}

// loss is the bare handler's throughput loss through the gateway.
func (f trustFloor) loss() float64 { return cost(f.bareGateway, f.bareDirect) }

// realLoss is inventory's: the read target's figure.
func (f trustFloor) realLoss() float64 { return cost(f.realGateway, f.realDirect) }

// hop is the CPU per read the gateway adds with nothing behind it.
func (f trustFloor) hop() float64 { return f.bareGatewayMs - f.bareDirectMs }

// hopServe is hop without the load generator.
func (f trustFloor) hopServe() float64 { return f.bareGatewayServe - f.bareDirectServe }

// modelLoss is the loss the CPU figures predict for a read of direct ms
// behind a hop of hop ms.
func modelLoss(direct, hop float64) float64 { return hop / (direct + hop) }

// allowance is the most CPU per read the budget lets the trust layer add
// to a read of direct ms.
func allowance(direct float64) float64 { return direct * trustReadBudget / (1 - trustReadBudget) }

// verdict says, with the run's figures, whether the cached-read budget is
// reachable behind this hop, and for inventory how much room is left.
func (f trustFloor) verdict() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	hop, proj := f.hop(), modelLoss(f.realDirectMs, f.hop())
	p("a bare handler replaying inventory's cached answer loses %.1f%% of its throughput through the same gateway "+
		"(%.0f vs %.0f req/s; the CPU figures predict %.1f%%), against %.1f%% for inventory. ",
		100*f.loss(), f.bareGateway.RPS, f.bareDirect.RPS, 100*modelLoss(f.bareDirectMs, hop), 100*f.realLoss())
	p("The hop alone adds %.3f ms of CPU per read (haproxy %.3f ms with the bare handler behind it, %.3f ms with "+
		"inventory; the rest: the client's TLS and HTTP/2, the handler's side of the proxied connection), so the %.0f%% budget needs a read that costs at least "+
		"%.3f ms directly. ", hop, f.haproxyBare, f.haproxyReal, 100*trustReadBudget, hop*(1-trustReadBudget)/trustReadBudget)
	if f.loss() > trustReadBudget {
		p("No service as cheap as the bare handler meets it. ")
	}
	if f.haproxyReal > f.haproxyBare {
		p("haproxy itself spends more per read in front of inventory than in front of the bare handler, so the " +
			"floor's hop is a low estimate of inventory's. ")
	}
	p("Inventory's cached read costs %.3f ms directly: the hop alone would cost it %.1f%%, its token check free. ",
		f.realDirectMs, 100*proj)
	if proj > trustReadBudget {
		p("So no change to inventory's code can bring cached reads through the gateway within %.0f%% on this machine "+
			"(short of making each read dearer): only a cheaper hop can.", 100*trustReadBudget)
		serve := modelLoss(f.realDirectServe, f.hopServe())
		if serve > trustReadBudget {
			p(" Clients on other machines would not change that: without the load generator, the hop adds "+
				"%.3f ms to a %.3f ms read, %.1f%%.", f.hopServe(), f.realDirectServe, 100*serve)
		} else {
			p(" With the clients on other machines it could be met: without the load generator, the hop adds "+
				"%.3f ms to a %.3f ms read, %.1f%%.", f.hopServe(), f.realDirectServe, 100*serve)
		}
		return b.String()
	}
	room := allowance(f.realDirectMs)
	extra := f.realGatewayMs - f.realDirectMs
	p("The budget allows %.3f ms per read on top of %.3f ms; the hop takes %.3f, leaving %.3f ms for the service's "+
		"own part of the trust layer. Inventory through the gateway spends %.3f ms more than directly (%s): %.3f ms "+
		"beyond the floor's hop.", room, f.realDirectMs, hop, room-hop, extra, f.extraText(), extra-hop)
	return b.String()
}

// extraText lists where the real read's extra CPU went, largest first.
func (f trustFloor) extraText() string {
	type kv struct {
		role string
		ms   float64
	}
	var xs []kv
	for r, v := range f.realExtra {
		if v >= 0.0005 || v <= -0.0005 {
			xs = append(xs, kv{r, v})
		}
	}
	sort.Slice(xs, func(i, j int) bool {
		if xs[i].ms != xs[j].ms {
			return xs[i].ms > xs[j].ms
		}
		return xs[i].role < xs[j].role
	})
	var parts []string
	for _, x := range xs {
		parts = append(parts, fmt.Sprintf("%s %+.3f", x.role, x.ms))
	}
	return strings.Join(parts, ", ")
}

// markdown writes the floor's part of "The cost of trust".
func (f trustFloor) markdown(b *bytes.Buffer) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("### The floor: a bare handler behind the same gateway\n\n")
	w("loadtest/baseline/fixedjson is a bare net/http handler that answers every product read with the answer\n")
	w("inventory gave from its cache at the start of the phase (same body and headers, ETag and Cache-Control\n")
	w("included; no router, middleware, cache or token check). It is read directly and through a second haproxy\n")
	w("started from the same deploy/gateway/haproxy.cfg whose product routes go to it, in the same interleaved\n")
	w("slices and with the same client as the rows above (readbench, TLS 1.3, HTTP/2, a token per worker). The\n")
	w("bare handler is the cheapest service there can be, so its loss is the most the hop can take from anything;\n")
	w("what carries over to a real service is the CPU the hop adds per request. A read that costs C ms of CPU\n")
	w("directly and Δ more through the gateway loses Δ/(C+Δ) of a CPU-bound machine's throughput, so a budget of\n")
	w("%.0f%% allows Δ ≤ C/%.0f. CPU here is that of the processes on the read path (the handler, with Redis and\n", 100*trustReadBudget, (1-trustReadBudget)/trustReadBudget)
	w("PostgreSQL behind inventory; haproxy; the kernel's threads) and of the load generator, which shares the CPUs;\n")
	w("other work on the machine is left out.\n\n")
	w("| | bare handler | inventory, cached read |\n|---|---:|---:|\n")
	w("| req/s direct (anonymous) / gateway (HTTP/2, token) | %s / %s | %s / %s |\n",
		rps(f.bareDirect.RPS), rps(f.bareGateway.RPS), rps(f.realDirect.RPS), rps(f.realGateway.RPS))
	w("| **throughput lost through the gateway** | **%.1f%%** | **%.1f%%** |\n", 100*f.loss(), 100*f.realLoss())
	w("| the same, predicted from CPU per read: Δ/(C+Δ) | %.1f%% | %.1f%% |\n",
		100*modelLoss(f.bareDirectMs, f.hop()), 100*modelLoss(f.realDirectMs, f.realGatewayMs-f.realDirectMs))
	w("| CPU per read, ms, direct / gateway | %.3f / %.3f | %.3f / %.3f |\n",
		f.bareDirectMs, f.bareGatewayMs, f.realDirectMs, f.realGatewayMs)
	w("| CPU added by the gateway (Δ), ms | %.3f | %.3f |\n", f.hop(), f.realGatewayMs-f.realDirectMs)
	w("| haproxy's CPU per read, ms | %.3f | %.3f |\n", f.haproxyBare, f.haproxyReal)
	w("| without the load generator: CPU per read direct / gateway, ms | %.3f / %.3f | %.3f / %.3f |\n",
		f.bareDirectServe, f.bareGatewayServe, f.realDirectServe, f.realGatewayServe)
	w("| the floor's hop applied to inventory's direct read: Δ_bare/(C_inventory+Δ_bare) | | %.1f%% |\n\n",
		100*modelLoss(f.realDirectMs, f.hop()))
	v := f.verdict()
	w("%s\n\n", strings.ToUpper(v[:1])+v[1:])
}
