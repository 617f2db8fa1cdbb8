//go:build scaling

package rolling

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestThroughput measures what replicas buy on this machine: the same
// closed-loop load (orders only, then product reads only) through HAProxy
// with one order and one inventory replica in service and with three,
// alternating, so both see the same machine. One replica means the other
// two are in HAProxy maintenance (their background loops still run). CPU
// seconds per component during each phase show where the time goes.
//
//	go test -tags scaling -run TestThroughput -v ./test/rolling/
func TestThroughput(t *testing.T) {
	c := startCluster(t, 3)
	const clients, warmup, measure = 16, 2 * time.Second, 8 * time.Second
	type row struct {
		replicas int
		phase    string
		rate     float64
		errors   int
		busy     float64 // whole machine, in cores
		cpu      map[string]float64
	}
	var rows []row
	for _, n := range []int{1, 3, 1, 3} {
		for i, r := range append(c.order, c.inv...) {
			state := "ready"
			if i%3 >= n {
				state = "maint"
			}
			backend := strings.SplitN(r.name, "-", 2)[0]
			c.admin(fmt.Sprintf("set server %s/%s state %s", backend, r.name, state))
		}
		for _, phase := range []struct {
			name string
			mode loadMode
		}{{"orders", ordersOnly}, {"product reads", readsOnly}} {
			l := c.startLoad(clients, 0, phase.mode, warmup+measure, 1<<30)
			time.Sleep(warmup)
			before, busyBefore := c.cpuTimes(), machineBusy()
			from := time.Now()
			time.Sleep(measure)
			after, busyAfter := c.cpuTimes(), machineBusy()
			to := time.Now()
			results := l.halt()
			rw := row{replicas: n, phase: phase.name, cpu: map[string]float64{},
				busy: (busyAfter - busyBefore) / to.Sub(from).Seconds()}
			ok := 0
			samples := map[string]int{}
			for _, r := range results {
				if r.at.Before(from) || r.at.After(to) {
					continue
				}
				if r.status == http.StatusOK || r.status == http.StatusCreated {
					ok++
					continue
				}
				rw.errors++
				msg := fmt.Sprintf("%d %.120s", r.status, strings.TrimSpace(r.err))
				samples[msg]++
			}
			for msg, k := range samples {
				t.Logf("%d replica(s), %s: %d× %s", n, phase.name, k, msg)
			}
			rw.rate = float64(ok) / to.Sub(from).Seconds()
			mine := 0.0
			for pid, a := range after {
				d := (a.seconds - before[pid].seconds) / to.Sub(from).Seconds()
				rw.cpu[a.name] += d
				mine += d
			}
			rw.cpu["other processes"] = rw.busy - mine
			rows = append(rows, rw)
			t.Logf("%d replica(s), %s: %.0f/s, %d errors, machine busy %.2f cores, per component (cores) %v",
				n, phase.name, rw.rate, rw.errors, rw.busy, formatCPU(rw.cpu))
		}
	}
	var b strings.Builder
	b.WriteString("| replicas | load | answers/s | errors | machine busy (of 2 cores) | CPU by component (cores) |\n|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %d | %s | %.0f | %d | %.2f | %s |\n", r.replicas, r.phase, r.rate, r.errors, r.busy, formatCPU(r.cpu))
	}
	t.Log("\n" + b.String())
	fmt.Println(b.String())
	// Errors are reported, not asserted: on a saturated machine a call can
	// outlast its timeout and the order is answered 503, as designed.
}

// procTime is the CPU time one process has used so far.
type procTime struct {
	name    string
	seconds float64
}

// cpuTimes returns the CPU time used so far by each of the cluster's
// processes, named by program (order for every order replica), by the
// Postgres backends of its databases and the server's own processes, by
// redis-server, and by this test (the load generator). Per process, so that a Postgres backend that exits
// between two readings does not make the sum go backwards.
func (c *cluster) cpuTimes() map[int]procTime {
	out := map[int]procTime{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		name := ""
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && filepath.Dir(exe) == binDir {
			name = filepath.Base(exe)
		} else if c.haproxy != nil && pid == c.haproxy.Process.Pid {
			name = "haproxy"
		} else if pid == os.Getpid() {
			name = "load generator"
		} else if comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm")); err == nil {
			switch s := strings.TrimSpace(string(comm)); s {
			case "redis-server":
				name = s
			case "postgres":
				// A backend's title names its database: count ours only
				// (and the server's shared processes), not other tests'.
				// Titles: "postgres: 15/main: <user> <db> <host(port)> <state>"
				// for a backend, "postgres: 15/main: checkpointer" and the
				// like for the server's own.
				cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
				f := strings.Fields(string(cmdline))
				if len(f) >= 5 && strings.Contains(f[4], "(") && !slices.Contains(c.db.Names, f[3]) {
					break
				}
				name = "postgres"
			}
		}
		if name != "" {
			out[pid] = procTime{name: name, seconds: procCPU(e.Name())}
		}
	}
	return out
}

// procCPU is utime + stime of one process, in seconds (USER_HZ is 100 on
// Linux).
func procCPU(pid string) float64 {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(fields[11], 64)
	k, _ := strconv.ParseFloat(fields[12], 64)
	return (u + k) / 100
}

// machineBusy is the CPU time all cores spent not idle so far, in seconds.
func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)[1:]
	var busy float64
	for i, v := range f {
		n, _ := strconv.ParseFloat(v, 64)
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy / 100
}

func formatCPU(m map[string]float64) string {
	var parts []string
	for _, k := range []string{"order", "inventory", "payment", "provider", "notification", "postgres", "redis-server", "haproxy", "load generator", "other processes"} {
		parts = append(parts, fmt.Sprintf("%s %.2f", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
