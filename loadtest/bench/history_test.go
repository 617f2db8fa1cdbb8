package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHistory_AppendAndRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bench-history.jsonl")
	got, err := readHistory(path)
	if err != nil || len(got) != 0 {
		t.Fatalf("readHistory(missing) = %v, %v; want no runs, no error", got, err)
	}
	r := &report{Machine: machine{Date: "2026-12-05T10:00:00Z", CPUs: 2, CPUModel: "Test CPU", MemoryGiB: "7.8", LoadBefore: "0.1 0.2 0.3"},
		CPU: map[string]cpuProfile{"orders_peak": {Ops: 100, TotalMs: 9.5,
			Shares: []cpuShare{{Role: "order", MsPer: 1.5}, {Role: "payment", MsPer: 0.5}, {Role: "postgres", MsPer: 3}}}}}
	for _, m := range []measurement{{Key: "orders_peak", RPS: 200}, {Key: "orders_80pct", P95: 80},
		{Key: "read_cached", RPS: 9000}, {Key: "read_uncached", RPS: 6000}, {Key: "read_redisget", RPS: 10000},
		{Key: "read_pgxget", RPS: 8000}} {
		r.add(m)
	}
	if err := appendHistory(path, r.historyEntry("abcdef0123456789", true)); err != nil {
		t.Fatal(err)
	}
	r.Machine.Date = "2026-12-06T10:00:00Z"
	r.CPU["orders_peak"] = cpuProfile{Ops: 100, TotalMs: 7.6, Shares: []cpuShare{{Role: "order", MsPer: 1}}}
	if err := appendHistory(path, r.historyEntry("1234567890abcdef", false)); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if n := strings.Count(string(b), "\n"); n != 2 {
		t.Fatalf("history has %d lines; want 2:\n%s", n, b)
	}
	got, err = readHistory(path)
	if err != nil {
		t.Fatal(err)
	}
	e := got[0]
	if e.Commit != "abcdef0123456789" || !e.Dirty || e.Machine.NProc != 2 || e.Machine.CPUModel != "Test CPU" || e.Machine.MemTotal != "7.8 GiB" {
		t.Errorf("first run = %+v", e)
	}
	want := map[string]float64{"cpu_per_order_ms": 9.5, "go_cpu_per_order_ms": 2, "postgres_cpu_per_order_ms": 3,
		"orders_per_s": 200, "order_p95_80pct_ms": 80, "cached_over_redisget": 0.9, "cached_over_uncached": 1.5,
		"cache_bound": 1.25, "cached_over_uncached_of_bound": 1.2}
	for k, v := range want {
		if !approx(e.Figures[k], v) {
			t.Errorf("figure %s = %v; want %v", k, e.Figures[k], v)
		}
	}
	if _, ok := e.Figures["remote_orders_per_s"]; ok {
		t.Error("a figure the run did not measure is on record")
	}

	r.Machine.Date = got[1].Date // a -render of the second run leaves it out of its own history
	if err := r.loadHistory(path); err != nil || len(r.history) != 1 {
		t.Errorf("loadHistory = %d runs, %v; want 1 (this run left out)", len(r.history), err)
	}
	if svg := string(historyChart(got)); !strings.Contains(svg, "<polyline") || !strings.Contains(svg, "abcdef0+") {
		t.Errorf("history chart lacks the line or the dirty commit's label:\n%s", svg)
	}
}

func TestParseHistory_Errors(t *testing.T) {
	if _, err := parseHistory(strings.NewReader("{\"commit\":\"a\"}\n\n{}\n"), "h"); err == nil || !strings.Contains(err.Error(), "h:2") {
		t.Errorf("an empty line: err = %v; want one naming h:2", err)
	}
	if _, err := parseHistory(strings.NewReader("{\"commit\":\"a\"}\nnot json\n"), "h"); err == nil || !strings.Contains(err.Error(), "h:2") {
		t.Errorf("a bad line: err = %v; want one naming h:2", err)
	}
}

func TestSelectRun(t *testing.T) {
	entries := []historyEntry{{Commit: "aaaa1111"}, {Commit: "22224444"}, {Commit: "aaaa1111"}, {Commit: "aaab3333"}}
	tests := []struct {
		ref     string
		want    int
		wantErr string
	}{
		{"1", 0, ""}, {"4", 3, ""}, {"-1", 3, ""}, {"-4", 0, ""},
		{"aaaa1", 2, ""}, // the latest run of that commit
		{"AAAB", 3, ""},
		{"aaa", 0, "at least 4"}, {"aaab", 3, ""}, {"aaa1", 0, "no run"},
		{"2222", 1, ""}, {"9999", 0, "4 runs"}, // digits: a commit prefix first, else a line
		{"0", 0, "line 0"}, {"5", 0, "4 runs"}, {"-5", 0, "4 runs"},
	}
	for _, tt := range tests {
		got, err := selectRun(entries, tt.ref)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("selectRun(%q) = %d, %v; want an error with %q", tt.ref, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("selectRun(%q) = %d, %v; want %d", tt.ref, got, err, tt.want)
		}
	}
	if _, err := selectRun([]historyEntry{{Commit: "aaaa1"}, {Commit: "aaaa2"}}, "aaaa"); err == nil || !strings.Contains(err.Error(), "ambiguous") {
		t.Errorf("two commits with the prefix: err = %v; want ambiguous", err)
	}
}

func TestCompareRuns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.jsonl")
	m := historyMachine{NProc: 2, CPUModel: "Test CPU", MemTotal: "7.8 GiB"}
	for _, e := range []historyEntry{
		{Commit: "1111aaaa", Date: "d1", Source: "make bench", Machine: m, Figures: map[string]float64{"cpu_per_order_ms": 10, "orders_per_s": 180}},
		{Commit: "2222bbbb", Date: "d2", Source: "make bench", Machine: m, Figures: map[string]float64{"cpu_per_order_ms": 8, "orders_per_s": 200, "cached_rps": 9000}},
		{Commit: "3333cccc", Date: "d3", Source: "make bench", Machine: historyMachine{NProc: 4, CPUModel: "Other", MemTotal: "16 GiB"},
			Figures: map[string]float64{"cpu_per_order_ms": 12}},
	} {
		if err := appendHistory(path, e); err != nil {
			t.Fatal(err)
		}
	}
	var b bytes.Buffer
	if err := compareRuns(&b, path, "1111", "2"); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, s := range []string{"A: line 1, 1111aaaa", "B: line 2, 2222bbbb", "machine: 2 × Test CPU",
		"-20.0% better", "+11.1% better", "cached product GET, req/s"} {
		if !strings.Contains(out, s) {
			t.Errorf("comparison lacks %q:\n%s", s, out)
		}
	}
	if strings.Contains(out, "remote DB") {
		t.Errorf("comparison prints a figure neither run has:\n%s", out)
	}
	b.Reset()
	if err := compareRuns(&b, path, "", ""); err != nil { // the last two
		t.Fatal(err)
	}
	if out := b.String(); !strings.Contains(out, "A: line 2") || !strings.Contains(out, "B: line 3") ||
		!strings.Contains(out, "different machines") || !strings.Contains(out, "+50.0% worse") {
		t.Errorf("default comparison:\n%s", out)
	}
	if err := compareRuns(&b, path, "", "1"); err == nil {
		t.Error("compareRuns with B the first run and no A: want an error (nothing before it)")
	}
	if err := compareRuns(&b, filepath.Join(t.TempDir(), "none"), "", ""); err == nil || !strings.Contains(err.Error(), "no runs") {
		t.Errorf("an empty history: err = %v; want one saying there are no runs", err)
	}
}

func TestRecentMet(t *testing.T) {
	h := []historyEntry{
		{Figures: map[string]float64{"p": 90}}, {Figures: map[string]float64{"p": 120}}, {Figures: map[string]float64{}},
		{Figures: map[string]float64{"p": 95}}, {Figures: map[string]float64{"p": 99}}, {Figures: map[string]float64{"p": 98}},
	}
	ok := func(v float64) bool { return v <= 100 }
	if met, runs := recentMet(h, 80, "p", 5, ok); met != 4 || runs != 5 {
		t.Errorf("recentMet = %d of %d; want 4 of 5 (this one and the last four runs with the figure: 98, 99, 95, 120)", met, runs)
	}
	if met, runs := recentMet(h[:2], 150, "p", 5, ok); met != 1 || runs != 3 {
		t.Errorf("recentMet = %d of %d; want 1 of 3", met, runs)
	}
}
