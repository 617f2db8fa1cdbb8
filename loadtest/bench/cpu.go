package main

import (
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuSample is the CPU time (user + system) every process on the machine
// has used so far, by pid, with the role each one plays, and the CPU time
// of this process's finished children (k6, pgbench).
type cpuSample struct {
	procs    map[int]procCPU
	children time.Duration
}

type procCPU struct {
	role string
	used time.Duration
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on
// every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// procNames is how sampleCPU names the processes the bench started: by
// binary for those in binDir (order, inventory, …), by pid for helpers
// whose binary other work on the machine may run too (the gateway's
// haproxy: make dev runs one with the same command line).
type procNames struct {
	binDir string
	pids   map[int]string
}

// sampleCPU reads /proc.
func sampleCPU(names procNames) cpuSample {
	s := cpuSample{procs: map[int]procCPU{}}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err == nil {
		s.children = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	entries, _ := os.ReadDir("/proc")
	for _, d := range entries {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		stat := string(b)
		// The command name is in parentheses and may hold spaces: the
		// fields after it start behind the last ')'.
		open, end := strings.IndexByte(stat, '('), strings.LastIndexByte(stat, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(stat[end+1:])
		if len(f) < 13 {
			continue
		}
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		cmdline, _ := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		r, ok := names.pids[pid]
		if !ok {
			r = role(names.binDir, stat[open+1:end], strings.Split(string(cmdline), "\x00"))
		}
		if r == "" {
			continue
		}
		s.procs[pid] = procCPU{role: r, used: time.Duration(utime+stime) * clockTick}
	}
	return s
}

// role names what a process is to the benchmark; "" for the load
// generators, which this program starts and waits for, so their CPU time
// comes exactly from its children's rusage instead (the floor program
// among them), and for loadtest/sqscount, which is measurement and left out
// of every figure. readbench, which runs while it is sampled
// (loadtest/bench/trust.go), is the load generator by name.
func role(binDir, comm string, argv []string) string {
	exe := ""
	if len(argv) > 0 {
		exe = argv[0]
	}
	switch {
	case comm == "k6" || comm == "pgbench":
		return ""
	case exe == "":
		return "kernel threads" // no command line: softirq, kworker, …
	case binDir != "" && strings.HasPrefix(exe, binDir):
		switch filepath.Base(exe) {
		case "readbench":
			return loadGenerator
		case "floor":
			// Waited for like k6: counted once, from rusage.
			return ""
		case "sqscount":
			// Measurement, not product: left out of every figure.
			return ""
		}
		return filepath.Base(exe)
	case strings.HasPrefix(comm, "postgres"):
		return "postgres"
	case strings.HasPrefix(comm, "redis-server"):
		return "redis"
	case comm == "node" || comm == "MainThread":
		for _, a := range argv {
			switch {
			case strings.Contains(a, "fauxqs"):
				return "fauxqs (SQS)"
			case strings.Contains(a, "maildev"):
				return "maildev (SMTP)"
			}
		}
	case strings.Contains(exe, "go-build") && strings.HasSuffix(exe, "/bench"):
		return benchRole
	}
	return "other: " + comm
}

// cpuShare is one role's CPU time per operation in a measurement window.
type cpuShare struct {
	Role  string  `json:"role"`
	MsPer float64 `json:"ms_per_op"`
	Share float64 `json:"share"`
}

// Roles the report looks for: k6, pgbench and readbench; this program.
const (
	loadGenerator = "load generator"
	benchRole     = "bench (this program)"
)

// cpuUsed adds to by the CPU each role used between before and after. A
// process that started in between counts from zero. This process's
// children (k6, pgbench) count as the load generator.
func cpuUsed(by map[string]time.Duration, before, after cpuSample) {
	for pid, p := range after.procs {
		d := p.used
		if b, ok := before.procs[pid]; ok {
			d -= b.used
		}
		if d > 0 {
			by[p.role] += d
		}
	}
	if d := after.children - before.children; d > 0 {
		by[loadGenerator] += d
	}
}

// perOp is the CPU of each role in by, and of all of them, per operation.
func perOp(by map[string]time.Duration, ops int64) (shares []cpuShare, total float64) {
	if ops <= 0 {
		return nil, 0
	}
	by = maps.Clone(by)
	var sum time.Duration
	for _, d := range by {
		sum += d
	}
	// Unnamed processes under 1% of the total share one row.
	for r, d := range by {
		if strings.HasPrefix(r, "other: ") && d < sum/100 {
			by["other"] += d
			delete(by, r)
		}
	}
	for r, d := range by {
		shares = append(shares, cpuShare{Role: r, MsPer: float64(d) / float64(time.Millisecond) / float64(ops),
			Share: float64(d) / float64(sum)})
	}
	sort.Slice(shares, func(i, j int) bool { return shares[i].MsPer > shares[j].MsPer })
	return shares, float64(sum) / float64(time.Millisecond) / float64(ops)
}

// cpuProfile is where the machine's CPU went during one measurement.
type cpuProfile struct {
	Ops     int64      `json:"ops"`
	TotalMs float64    `json:"total_ms_per_op"`
	Shares  []cpuShare `json:"by_process"`
}

// share returns role's share of the profile.
func (p cpuProfile) share(role string) (cpuShare, bool) {
	for _, sh := range p.Shares {
		if sh.Role == role {
			return sh, true
		}
	}
	return cpuShare{}, false
}

// cpuTally is the CPU by role and the operations of one configuration,
// summed over the rounds or slices it was measured in.
type cpuTally struct {
	by  map[string]time.Duration
	ops int64
}

// add adds what every process used between before and after.
func (t *cpuTally) add(before, after cpuSample) {
	if t.by == nil {
		t.by = map[string]time.Duration{}
	}
	cpuUsed(t.by, before, after)
}

// profile is the tally per operation.
func (t *cpuTally) profile() cpuProfile {
	shares, total := perOp(t.by, t.ops)
	return cpuProfile{Ops: t.ops, TotalMs: total, Shares: shares}
}

// profileCPU runs measure while sampling every process's CPU time once a
// second, and records the CPU per operation under key; measure
// returns how many operations it completed.
func (r *report) profileCPU(names procNames, key string, measure func() (int64, error)) error {
	var t cpuTally
	if err := t.measure(names, measure); err != nil {
		return err
	}
	if r.CPU == nil {
		r.CPU = map[string]cpuProfile{}
	}
	r.CPU[key] = t.profile()
	return nil
}

// measure runs measure while sampling every process's CPU time once a
// second, and adds what they used and the operations measure says it
// completed to t. The sampling keeps processes that end before measure
// returns (pgbench's PostgreSQL backends): each counts up to its last
// sample, so at most a second of theirs is lost.
func (t *cpuTally) measure(names procNames, measure func() (int64, error)) error {
	before := sampleCPU(names)
	last := cpuSample{procs: map[int]procCPU{}}
	merge := func(s cpuSample) {
		for pid, p := range s.procs {
			last.procs[pid] = p
		}
		last.children = s.children
	}
	merge(before)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // merges only until done is closed: no lock needed
		defer close(done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				merge(sampleCPU(names))
			}
		}
	}()
	ops, err := measure()
	close(stop)
	<-done
	if err != nil {
		return err
	}
	merge(sampleCPU(names))
	t.add(before, last)
	t.ops += ops
	return nil
}
