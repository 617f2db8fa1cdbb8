package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

// floorReport is a trust phase's read figures: the bare handler and
// inventory, direct and through the gateway, with CPU per read by process.
func floorReport(invDirect, invGateway float64) *report {
	r := &report{CPU: map[string]cpuProfile{}}
	for _, m := range []measurement{
		{Key: "trust_read_direct", RPS: 8000}, {Key: "trust_read_gateway", RPS: 4400},
		{Key: "trust_read_floor_direct", RPS: 20000}, {Key: "trust_read_floor_gateway", RPS: 11000},
	} {
		m.Group = "trust"
		r.add(m)
	}
	prof := func(shares ...cpuShare) cpuProfile {
		p := cpuProfile{Ops: 1000, Shares: shares}
		for _, s := range shares {
			p.TotalMs += s.MsPer
		}
		return p
	}
	r.CPU["trust_read_floor_direct"] = prof(cpuShare{Role: floorRole, MsPer: 0.050},
		cpuShare{Role: loadGenerator, MsPer: 0.040}, cpuShare{Role: "other", MsPer: 0.5},
		cpuShare{Role: "postgres", MsPer: 0.2}) // other work's: not on the bare handler's path
	r.CPU["trust_read_floor_gateway"] = prof(cpuShare{Role: floorRole, MsPer: 0.050},
		cpuShare{Role: floorGatewayRole, MsPer: 0.070}, cpuShare{Role: loadGenerator, MsPer: 0.050},
		cpuShare{Role: benchRole, MsPer: 0.3})
	r.CPU["trust_read_direct"] = prof(cpuShare{Role: "inventory", MsPer: invDirect - 0.06},
		cpuShare{Role: loadGenerator, MsPer: 0.060})
	r.CPU["trust_read_gateway"] = prof(cpuShare{Role: "inventory", MsPer: invGateway - 0.07 - 0.09},
		cpuShare{Role: gatewayRole, MsPer: 0.090}, cpuShare{Role: loadGenerator, MsPer: 0.070})
	return r
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestTrustFloor(t *testing.T) {
	tests := []struct {
		name                    string
		invDirect, invGateway   float64
		wantProjected, wantRoom float64
		wantVerdict             []string
		notVerdict              []string
	}{
		{"hop alone exceeds the budget", 0.200, 0.370, 0.08 / 0.28, 0.2 / 3,
			[]string{"loses 45.0%", "No service as cheap as the bare handler", "would cost it 28.6%",
				"no change to inventory's code", "at least 0.240 ms directly",
				"Clients on other machines would not change that", "a low estimate",
				"adds 0.070 ms to a 0.140 ms read, 33.3%"},
			[]string{"leaving"}},
		{"hop leaves room", 0.400, 0.560, 0.08 / 0.48, 0.4 / 3,
			[]string{"would cost it 16.7%", "leaving 0.053 ms", "inventory +0.060", "haproxy (gateway) +0.090",
				"0.080 ms beyond the floor's hop"},
			[]string{"no change to inventory's code"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, ok := floorReport(tt.invDirect, tt.invGateway).trustFloor()
			if !ok {
				t.Fatal("trustFloor() ok = false; want true")
			}
			if got := f.hop(); !near(got, 0.08) {
				t.Errorf("hop() = %v; want 0.08 (other work, off-path processes and this program excluded)", got)
			}
			if got := f.loss(); !near(got, 0.45) {
				t.Errorf("loss() = %v; want 0.45", got)
			}
			if got := modelLoss(f.realDirectMs, f.hop()); !near(got, tt.wantProjected) {
				t.Errorf("projected loss = %v; want %v", got, tt.wantProjected)
			}
			if got := allowance(f.realDirectMs); !near(got, tt.wantRoom) {
				t.Errorf("allowance(%v) = %v; want %v", f.realDirectMs, got, tt.wantRoom)
			}
			if !near(f.haproxyBare, 0.07) || !near(f.haproxyReal, 0.09) {
				t.Errorf("haproxy = %v (bare), %v (real); want 0.07, 0.09", f.haproxyBare, f.haproxyReal)
			}
			v := f.verdict()
			for _, s := range tt.wantVerdict {
				if !strings.Contains(v, s) {
					t.Errorf("verdict lacks %q:\n%s", s, v)
				}
			}
			for _, s := range tt.notVerdict {
				if strings.Contains(v, s) {
					t.Errorf("verdict has %q:\n%s", s, v)
				}
			}
			var b bytes.Buffer
			f.markdown(&b)
			if !strings.Contains(b.String(), "| **throughput lost through the gateway** | **45.0%** | **45.0%** |") {
				t.Errorf("markdown lacks the loss row:\n%s", b.String())
			}
		})
	}
}

func TestTrustFloor_NotMeasured(t *testing.T) {
	r := floorReport(0.2, 0.37)
	delete(r.CPU, "trust_read_floor_gateway")
	if _, ok := r.trustFloor(); ok {
		t.Error("trustFloor() ok = true without the floor's CPU profile; want false")
	}
	var b bytes.Buffer
	r.trustMarkdown(&b)
	if strings.Contains(b.String(), "### The floor") {
		t.Error("trustMarkdown wrote the floor section without its figures")
	}
}

func TestEvaluate_TrustFloorFinding(t *testing.T) {
	r := floorReport(0.2, 0.37)
	r.evaluate()
	var finding bool
	for _, f := range r.Findings {
		finding = finding || strings.HasPrefix(f, "The floor")
	}
	if !finding {
		t.Errorf("evaluate() findings = %q; want one on the floor", r.Findings)
	}
	var ratio bool
	for _, x := range r.Ratios {
		ratio = ratio || (strings.HasPrefix(x.Name, "trust floor:") && x.Text == "0.550")
	}
	if !ratio {
		t.Errorf("evaluate() ratios lack the floor's 0.550: %+v", r.Ratios)
	}
}
