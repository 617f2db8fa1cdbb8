package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRemoteMarkdown(t *testing.T) {
	r := &report{Params: map[string]string{"vus": "16"}}
	var b bytes.Buffer
	r.remoteMarkdown(&b)
	if b.Len() != 0 {
		t.Fatalf("remoteMarkdown without the phase's figures wrote %q", b.String())
	}
	for _, m := range []measurement{
		{Key: "remote_read_loop_cached", RPS: 9000, Group: "remotedb"}, {Key: "remote_read_loop_uncached", RPS: 6000, Group: "remotedb"},
		{Key: "remote_read_db_cached", RPS: 8000, Group: "remotedb"}, {Key: "remote_read_db_uncached", RPS: 2000, Group: "remotedb"},
		{Key: "remote_same_loop_cached", RPS: 1600, P50: 1, P95: 2, P99: 3, Group: "remotedb"},
		{Key: "remote_same_loop_uncached", RPS: 1600, P50: 1.5, P95: 4, P99: 6, Group: "remotedb"},
		{Key: "remote_same_db_cached", RPS: 1600, P50: 1, P95: 2, P99: 3, Group: "remotedb"},
		{Key: "remote_same_db_uncached", RPS: 1600, P50: 4, P95: 10, P99: 20, Group: "remotedb"},
		{Key: "orders_peak", RPS: 150, Group: "orders"}, {Key: "remote_orders_peak", RPS: 90, Group: "remotedb"},
		{Key: "seed_open_off", OrderP95: 200, ReadP95: 9, Group: "seed000"},
	} {
		r.add(m)
	}
	r.CPU = map[string]cpuProfile{"remote_orders_peak": {TotalMs: 12, Shares: []cpuShare{{Role: toxiproxyBinary, MsPer: 0.8}}}}
	r.remoteMarkdown(&b)
	out := b.String()
	for _, s := range []string{
		"| **cached ÷ uncached throughput** | **1.50×** | **4.00×** |",
		"| uncached p50 / p95 / p99 ms, at 1600 req/s | 1.50 / 4.00 / 6.00 | 4.00 / 10.0 / 20.0 |",
		"| **p95 cut by the cache at the same load** | **50%** | **80%** |",
		"| orders/s, most the stack completes (16 VUs) | 150 | 90 |",
		"| seed 000 at half the off peak, patterns off: order p95 | 200.0 ms (product 9.00 ms) | – |",
		"Toxiproxy itself spent 0.800 ms",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("remote section lacks %q:\n%s", s, out)
		}
	}
	if strings.Contains(out, "patterns on: order p95") {
		t.Errorf("a row neither profile measured:\n%s", out)
	}
}

func TestViaAddr(t *testing.T) {
	u := "postgres://postgres@127.0.0.1:5432/bench_x?sslmode=disable"
	if got := viaAddr(u, "127.0.0.1:15432"); got != "postgres://postgres@127.0.0.1:15432/bench_x?sslmode=disable" {
		t.Errorf("viaAddr = %q", got)
	}
	if got := viaAddr(u, ""); got != u {
		t.Errorf("viaAddr(u, \"\") = %q; want u", got)
	}
	if got := dbName(u); got != "bench_x" {
		t.Errorf("dbName = %q; want bench_x", got)
	}
}
