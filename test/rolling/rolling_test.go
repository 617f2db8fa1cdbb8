//go:build rolling

package rolling

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestRollingRestart restarts the three order replicas one by one, then the
// three inventory replicas, under a steady load of orders and product reads
// through HAProxy, as a deploy would: SIGTERM, wait for the exit, start the
// new process, wait until HAProxy routes to it again, next. Every answer
// must be a 201 or a 200 (the load cannot produce a business 402/409), and
// every invariant of the fault suite must hold afterwards.
func TestRollingRestart(t *testing.T) {
	c := startCluster(t, 3)
	initial, _ := c.db.Stock(skus)

	// 8 clients, 20 ms apart: about 60 orders/s and as many reads on a
	// 2-core machine, bounded in time and count whatever happens.
	l := c.startLoad(8, 20*time.Millisecond, ordersAndReads, 3*time.Minute, 20000)
	time.Sleep(time.Second)
	began := time.Now()
	for _, group := range [][]*replica{c.order, c.inv} {
		for _, r := range group {
			stopping := time.Now()
			out := make(chan time.Duration, 1)
			go func() { out <- c.takenOut(r) }()
			c.stop(r)
			stopped := time.Since(stopping)
			// The drain worked when HAProxy's health checks took the
			// replica out while it was still serving: no request had to
			// find out by a refused connection.
			if d := <-out; d == 0 || d > stopped {
				t.Errorf("%s exited %v after SIGTERM, before HAProxy marked it DOWN; SHUTDOWN_DRAIN=%s must outlast inter 1s × fall 2",
					r.name, stopped.Round(10*time.Millisecond), drain)
			} else {
				t.Logf("%s: DOWN in HAProxy %v after SIGTERM, exited after %v", r.name,
					d.Round(10*time.Millisecond), stopped.Round(10*time.Millisecond))
			}
			c.start(r)
			c.waitStatus(r, "UP")
			t.Logf("%s: back in HAProxy %v after SIGTERM", r.name, time.Since(stopping).Round(10*time.Millisecond))
		}
	}
	ended := time.Now()
	time.Sleep(time.Second)
	results := l.halt()

	var orders, reads, during int
	byStatus := map[string]int{}
	var failures []string
	for _, r := range results {
		if r.read {
			reads++
		} else {
			orders++
		}
		if !r.at.Before(began) && r.at.Before(ended) {
			during++
		}
		kind := "order"
		if r.read {
			kind = "read"
		}
		byStatus[fmt.Sprintf("%s %d", kind, r.status)]++
		if (r.read && r.status != http.StatusOK) || (!r.read && r.status != http.StatusCreated) {
			if len(failures) < 10 {
				failures = append(failures, fmt.Sprintf("%s at +%v: %d %s", kind,
					r.at.Sub(began).Round(time.Millisecond), r.status, strings.TrimSpace(r.err)))
			}
		}
	}
	var statuses []string
	for k, n := range byStatus {
		statuses = append(statuses, fmt.Sprintf("%s: %d", k, n))
	}
	sort.Strings(statuses)
	t.Logf("rolling restart of 6 replicas in %v: %d orders, %d product reads (%d answered during the restarts); answers %s",
		ended.Sub(began).Round(100*time.Millisecond), orders, reads, during, strings.Join(statuses, ", "))
	if orders == 0 || reads == 0 || during == 0 {
		t.Fatalf("the load sent %d orders and %d reads, %d during the restarts; want some of each", orders, reads, during)
	}
	for _, f := range failures {
		t.Errorf("failed request during the rolling restart: %s", f)
	}
	// HAProxy retries a request whose connection failed on another replica;
	// with the drain none needed it. Reported, not asserted: a retry is
	// invisible to the client.
	retries, _ := c.stats("wretr")
	redispatches, _ := c.stats("wredis")
	t.Logf("HAProxy retries: order %s, inventory %s; redispatches: order %s, inventory %s",
		retries["order/BACKEND"], retries["inventory/BACKEND"], redispatches["order/BACKEND"], redispatches["inventory/BACKEND"])

	for _, v := range c.settle() {
		t.Error(v)
	}
	for _, v := range c.checkInvariants(results, initial) {
		t.Error(v)
	}
}
