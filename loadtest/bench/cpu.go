package main

import (
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

// sampleCPU reads /proc. binDir is where the bench's binaries live: a
// process started from there is named by its binary (order, inventory, …).
func sampleCPU(binDir string) cpuSample {
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
		r := role(binDir, stat[open+1:end], strings.Split(string(cmdline), "\x00"))
		if r == "" {
			continue
		}
		s.procs[pid] = procCPU{role: r, used: time.Duration(utime+stime) * clockTick}
	}
	return s
}

// role names what a process is to the benchmark; "" for the load
// generators, which this program starts and waits for, so their CPU time
// comes exactly from its children's rusage instead.
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
		return "bench (this program)"
	}
	return "other: " + comm
}

// cpuShare is one role's CPU time per operation in a measurement window.
type cpuShare struct {
	Role  string  `json:"role"`
	MsPer float64 `json:"ms_per_op"`
	Share float64 `json:"share"`
}

// cpuPerOp divides the CPU each role used between before and after by ops.
// A process that started in between counts from zero. This process's
// children (k6, pgbench) count as "load generator". The total is the CPU of
// the whole machine.
func cpuPerOp(before, after cpuSample, ops int64) (shares []cpuShare, total float64) {
	if ops <= 0 {
		return nil, 0
	}
	by := map[string]time.Duration{}
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
		by["load generator"] += d
	}
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

// profileCPU runs measure while sampling every process's CPU time once a
// second, and records the CPU per operation under key; measure
// returns how many operations it completed. The sampling keeps processes
// that end before measure returns (pgbench's PostgreSQL backends): each
// counts up to its last sample, so at most a second of theirs is lost.
func (r *report) profileCPU(binDir, key string, measure func() (int64, error)) error {
	before := sampleCPU(binDir)
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
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				merge(sampleCPU(binDir))
			}
		}
	}()
	ops, err := measure()
	close(stop)
	<-done
	if err != nil {
		return err
	}
	merge(sampleCPU(binDir))
	shares, total := cpuPerOp(before, last, ops)
	if r.CPU == nil {
		r.CPU = map[string]cpuProfile{}
	}
	r.CPU[key] = cpuProfile{Ops: ops, TotalMs: total, Shares: shares}
	return nil
}
