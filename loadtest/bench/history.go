package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
)

// Benchmarks that remember: every full run appends its headline figures,
// with the commit and the machine, to docs/bench-history.jsonl (one JSON
// object a line); the report charts them across runs, and -compare prints
// two runs side by side (make bench-compare).

// historyEntry is one run on record.
type historyEntry struct {
	Commit string `json:"commit"`
	// Dirty is set when the working tree had uncommitted changes: the
	// figures are of the commit plus those.
	Dirty   bool               `json:"dirty,omitempty"`
	Date    string             `json:"date"`
	Source  string             `json:"source"`
	Machine historyMachine     `json:"machine"`
	Figures map[string]float64 `json:"figures"`
}

// historyMachine is what the figures of a run depend on most.
type historyMachine struct {
	NProc    int    `json:"nproc"`
	CPUModel string `json:"cpu_model"`
	MemTotal string `json:"mem_total"`
	Load     string `json:"load_average_before,omitempty"`
}

// figureDef is one figure of the history: its key, what it is, and
// whether more is better.
type figureDef struct {
	key, name string
	higher    bool
}

// figureDefs are the figures a run records, in the order they are printed.
var figureDefs = []figureDef{
	{"cpu_per_order_ms", "whole-machine CPU per order, ms", false},
	{"go_cpu_per_order_ms", "Go services' CPU per order, ms", false},
	{"postgres_cpu_per_order_ms", "PostgreSQL's CPU per order, ms", false},
	{"floor_ms_per_order", "floor of one order, ms", false},
	{"cpu_over_floor", "CPU per order ÷ floor", false},
	{"orders_per_s", "orders/s, most the stack completes", true},
	{"order_p95_80pct_ms", "order p95 at 80% of peak, ms", false},
	{"cached_rps", "cached product GET, req/s", true},
	{"uncached_rps", "uncached product GET, req/s", true},
	{"cached_over_redisget", "cached GET ÷ bare go-redis handler", true},
	{"cached_over_uncached", "cached ÷ uncached GET", true},
	{"cache_bound", "bound: bare go-redis ÷ bare pgx handler", true},
	{"cached_over_uncached_of_bound", "cached ÷ uncached, share of the bound", true},
	{"remote_cached_over_uncached", "remote DB: cached ÷ uncached GET", true},
	{"remote_orders_per_s", "remote DB: orders/s", true},
	{"seed_order_p95_cut", "seed 000: order p95 cut, on vs off", true},
}

// historyFigures are the report's figures that the history keeps.
func (r *report) historyFigures() map[string]float64 {
	f := map[string]float64{}
	set := func(k string, v float64) {
		if v > 0 && !math.IsInf(v, 0) && !math.IsNaN(v) {
			f[k] = v
		}
	}
	if p, ok := r.CPU["orders_peak"]; ok {
		set("cpu_per_order_ms", p.TotalMs)
		set("go_cpu_per_order_ms", goCPU(p))
		pg, _ := p.share("postgres")
		set("postgres_cpu_per_order_ms", pg.MsPer)
	}
	if fl, ok := r.orderFloor(); ok {
		set("floor_ms_per_order", fl.Floor)
		set("cpu_over_floor", fl.Ratio())
	}
	rate := func(k string) float64 { m, _ := r.get(k); return m.RPS }
	set("orders_per_s", rate("orders_peak"))
	if m, ok := r.get("orders_80pct"); ok {
		set("order_p95_80pct_ms", m.P95)
	}
	cached, uncached := rate("read_cached"), rate("read_uncached")
	redisget, pgxget := rate("read_redisget"), rate("read_pgxget")
	set("cached_rps", cached)
	set("uncached_rps", uncached)
	if redisget > 0 {
		set("cached_over_redisget", cached/redisget)
	}
	if uncached > 0 {
		set("cached_over_uncached", cached/uncached)
	}
	if pgxget > 0 {
		set("cache_bound", redisget/pgxget)
		if uncached > 0 && redisget > 0 {
			set("cached_over_uncached_of_bound", (cached/uncached)/(redisget/pgxget))
		}
	}
	if u := rate("remote_read_db_uncached"); u > 0 {
		set("remote_cached_over_uncached", rate("remote_read_db_cached")/u)
	}
	set("remote_orders_per_s", rate("remote_orders_peak"))
	on, ok1 := r.get("seed_open_on")
	off, ok2 := r.get("seed_open_off")
	if ok1 && ok2 && off.OrderP95 > 0 {
		set("seed_order_p95_cut", 1-on.OrderP95/off.OrderP95)
	}
	return f
}

// historyEntry is this run as a line of the history.
func (r *report) historyEntry(commit string, dirty bool) historyEntry {
	return historyEntry{Commit: commit, Dirty: dirty, Date: r.Machine.Date, Source: "make bench",
		Machine: historyMachine{NProc: r.Machine.CPUs, CPUModel: r.Machine.CPUModel,
			MemTotal: r.Machine.MemoryGiB + " GiB", Load: r.Machine.LoadBefore},
		Figures: r.historyFigures()}
}

// commitOf is the commit checked out in dir, and whether its working tree
// has changes; "unknown" outside a git checkout.
func commitOf(dir string) (string, bool) {
	out, err := exec.Command("git", "-C", dir, "rev-parse", "HEAD").Output()
	if err != nil {
		return "unknown", false
	}
	st, _ := exec.Command("git", "-C", dir, "status", "--porcelain", "--untracked-files=no").Output()
	return strings.TrimSpace(string(out)), len(bytes.TrimSpace(st)) > 0
}

// appendHistory adds e to the history in path as one line.
func appendHistory(path string, e historyEntry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("history: %w", err)
	}
	return f.Close()
}

// readHistory reads the runs on record, in file order; no file is no runs.
func readHistory(path string) ([]historyEntry, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseHistory(f, path)
}

func parseHistory(rd io.Reader, name string) ([]historyEntry, error) {
	var out []historyEntry
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			return nil, fmt.Errorf("%s:%d: an empty line (one run per line)", name, n)
		}
		var e historyEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, n, err)
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// loadHistory keeps the runs on record before this one for the report (a
// -render of a run already on record leaves it out).
func (r *report) loadHistory(path string) error {
	if path == "" {
		return nil
	}
	all, err := readHistory(path)
	if err != nil {
		return err
	}
	r.history = nil
	for _, e := range all {
		if e.Date != r.Machine.Date {
			r.history = append(r.history, e)
		}
	}
	return nil
}

// recentMet counts the runs among this one and the last n-1 on record whose
// figure key satisfied ok, and how many of them had the figure.
func recentMet(history []historyEntry, this float64, key string, n int, ok func(float64) bool) (met, runs int) {
	if this > 0 {
		runs++
		if ok(this) {
			met++
		}
	}
	for i := len(history) - 1; i >= 0 && runs < n; i-- {
		v, has := history[i].Figures[key]
		if !has {
			continue
		}
		runs++
		if ok(v) {
			met++
		}
	}
	return met, runs
}

// selectRun finds ref in entries: a line number of the file (1 is the
// first; -1 the last), else a commit prefix (the latest run of that commit).
func selectRun(entries []historyEntry, ref string) (int, error) {
	if len(entries) == 0 {
		return 0, errors.New("no runs on record")
	}
	// Four or more hex digits name a commit first (a commit's prefix may be
	// all digits); a shorter or negative number is a line.
	if len(ref) >= 4 && strings.Trim(strings.ToLower(ref), "0123456789abcdef") == "" {
		if i, err := selectCommit(entries, ref); err == nil || !errors.Is(err, errNoCommit) {
			return i, err
		}
	}
	if n, err := strconv.Atoi(ref); err == nil {
		i := n - 1
		if n < 0 {
			i = len(entries) + n
		}
		if n == 0 || i < 0 || i >= len(entries) {
			return 0, fmt.Errorf("line %d: the history has %d runs", n, len(entries))
		}
		return i, nil
	}
	if len(ref) < 4 {
		return 0, fmt.Errorf("%q: give a line number or at least 4 characters of a commit", ref)
	}
	return selectCommit(entries, ref)
}

// errNoCommit is selectCommit's answer when no run has the prefix.
var errNoCommit = errors.New("no run of that commit on record")

// selectCommit finds the latest run of the commit with prefix ref.
func selectCommit(entries []historyEntry, ref string) (int, error) {
	found := -1
	commits := map[string]bool{}
	for i, e := range entries {
		if strings.HasPrefix(e.Commit, strings.ToLower(ref)) {
			found = i
			commits[e.Commit] = true
		}
	}
	switch {
	case found < 0:
		return 0, fmt.Errorf("%s: %w", ref, errNoCommit)
	case len(commits) > 1:
		var cs []string
		for c := range commits {
			cs = append(cs, c[:min(12, len(c))])
		}
		sort.Strings(cs)
		return 0, fmt.Errorf("%s is ambiguous: %s", ref, strings.Join(cs, ", "))
	}
	return found, nil
}

// compareRuns prints runs a and b of the history in path side by side.
// b "" is the last run; a "" the one before b.
func compareRuns(w io.Writer, path, a, b string) error {
	entries, err := readHistory(path)
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		return fmt.Errorf("%s holds no runs yet: make bench appends one", path)
	}
	j := len(entries) - 1
	if b != "" {
		if j, err = selectRun(entries, b); err != nil {
			return fmt.Errorf("B: %w", err)
		}
	}
	i := j - 1
	if a != "" {
		if i, err = selectRun(entries, a); err != nil {
			return fmt.Errorf("A: %w", err)
		}
	}
	if i < 0 {
		return fmt.Errorf("no run before line %d to compare it with", j+1)
	}
	writeComparison(w, i, j, entries[i], entries[j])
	return nil
}

// writeComparison prints two runs and the change of each figure.
func writeComparison(w io.Writer, i, j int, a, b historyEntry) {
	desc := func(n int, e historyEntry) string {
		c := e.Commit[:min(12, len(e.Commit))]
		if e.Dirty {
			c += "+changes"
		}
		return fmt.Sprintf("line %d, %s, %s", n+1, c, e.Date)
	}
	fmt.Fprintf(w, "A: %s (%s)\nB: %s (%s)\n", desc(i, a), a.Source, desc(j, b), b.Source)
	ma, mb := a.Machine, b.Machine
	if ma.NProc != mb.NProc || ma.CPUModel != mb.CPUModel || ma.MemTotal != mb.MemTotal {
		fmt.Fprintf(w, "different machines: A %d × %s, %s; B %d × %s, %s\n",
			ma.NProc, ma.CPUModel, ma.MemTotal, mb.NProc, mb.CPUModel, mb.MemTotal)
	} else {
		fmt.Fprintf(w, "machine: %d × %s, %s\n", mb.NProc, mb.CPUModel, mb.MemTotal)
	}
	fmt.Fprintf(w, "\n%-42s %12s %12s %12s\n", "figure", "A", "B", "change")
	for _, d := range figureDefs {
		va, okA := a.Figures[d.key]
		vb, okB := b.Figures[d.key]
		if !okA && !okB {
			continue
		}
		cell := func(v float64, ok bool) string {
			if !ok {
				return "–"
			}
			return num(v)
		}
		change := ""
		if okA && okB && va != 0 {
			rel := vb/va - 1
			change = fmt.Sprintf("%+.1f%%", 100*rel)
			if math.Abs(rel) >= 0.005 {
				if (rel > 0) == d.higher {
					change += " better"
				} else {
					change += " worse"
				}
			}
		}
		fmt.Fprintf(w, "%-42s %12s %12s %12s\n", d.name, cell(va, okA), cell(vb, okB), change)
	}
}

// backfillHistory adds to the history the figures of every committed
// docs/benchmarks.json it does not hold yet (by date), oldest first: the
// runs from before the history existed. It only reads git.
func backfillHistory(o options) error {
	out, err := exec.Command("git", "log", "--reverse", "--format=%H", "--", o.jsonOut).Output()
	if err != nil {
		return fmt.Errorf("git log %s: %w", o.jsonOut, err)
	}
	have, err := readHistory(o.history)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, e := range have {
		seen[e.Date] = true
	}
	added := 0
	for _, c := range strings.Fields(string(out)) {
		b, err := exec.Command("git", "show", c+":"+o.jsonOut).Output()
		if err != nil {
			return fmt.Errorf("git show %s:%s: %w", c, o.jsonOut, err)
		}
		var r report
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("%s at %s: %w", o.jsonOut, c[:12], err)
		}
		if seen[r.Machine.Date] {
			continue
		}
		e := r.historyEntry(c, false)
		e.Source = "backfilled from " + o.jsonOut + " as committed in " + c[:12]
		if err := appendHistory(o.history, e); err != nil {
			return err
		}
		seen[r.Machine.Date] = true
		added++
	}
	say("added %d runs to %s", added, o.history)
	return nil
}

// historyChart draws the runs on record: CPU per order, orders/s and the
// read ratios, one panel each, a point per run in date order.
func historyChart(entries []historyEntry) []byte {
	entries = append([]historyEntry(nil), entries...)
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].Date < entries[j].Date })
	type line struct {
		key, label, color string
	}
	panels := []struct {
		title string
		lines []line
	}{
		{"CPU per order, ms", []line{{"cpu_per_order_ms", "whole machine", "#4c78a8"},
			{"go_cpu_per_order_ms", "Go services", "#f58518"}, {"floor_ms_per_order", "floor", "#54a24b"}}},
		{"orders per second (most the stack completes)", []line{{"orders_per_s", "loopback", "#4c78a8"},
			{"remote_orders_per_s", "remote DB", "#e45756"}}},
		{"read ratios", []line{{"cached_over_redisget", "cached ÷ bare go-redis", "#4c78a8"},
			{"cached_over_uncached_of_bound", "(cached ÷ uncached) ÷ bound", "#f58518"},
			{"remote_cached_over_uncached", "remote DB: cached ÷ uncached", "#e45756"}}},
	}
	const left, plotW, panelH, gap, top = 60, 760, 150, 70, 40
	width := left + plotW + 40
	height := top + len(panels)*(panelH+gap) + 20
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n",
		width, height, width, height)
	w(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	w(`<text x="10" y="20" font-size="14" font-weight="bold">%s</text>`+"\n",
		esc(fmt.Sprintf("make bench across runs (%d on record, docs/bench-history.jsonl)", len(entries))))
	n := len(entries)
	x := func(i int) float64 {
		if n <= 1 {
			return left + plotW/2
		}
		return left + float64(plotW)*float64(i)/float64(n-1)
	}
	for p, panel := range panels {
		y0 := top + p*(panelH+gap) + 20
		hi := 0.0
		for _, l := range panel.lines {
			for _, e := range entries {
				hi = math.Max(hi, e.Figures[l.key])
			}
		}
		if hi <= 0 {
			hi = 1
		}
		hi *= 1.1
		y := func(v float64) float64 { return float64(y0+panelH) - float64(panelH)*v/hi }
		w(`<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", left, y0-6, esc(panel.title))
		w(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999"/>`+"\n", left, y0+panelH, left+plotW, y0+panelH)
		for k := 0; k <= 4; k++ {
			v := hi * float64(k) / 4
			w(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/>`+"\n", left, y(v), left+plotW, y(v))
			w(`<text x="%d" y="%.1f" text-anchor="end" fill="#555">%s</text>`+"\n", left-4, y(v)+3, num(v))
		}
		for li, l := range panel.lines {
			var pts []string
			for i, e := range entries {
				v, ok := e.Figures[l.key]
				if !ok {
					continue
				}
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(i), y(v)))
				w(`<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s</title></circle>`+"\n", x(i), y(v), l.color,
					esc(fmt.Sprintf("%s %s: %s", shortCommit(e), l.label, num(v))))
			}
			if len(pts) > 1 {
				w(`<polyline points="%s" fill="none" stroke="%s" stroke-width="1.5"/>`+"\n", strings.Join(pts, " "), l.color)
			}
			lx := left + 10 + li*230
			w(`<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n",
				lx, y0+4, l.color, lx+14, y0+13, esc(l.label))
		}
		for i, e := range entries {
			w(`<text x="%.1f" y="%d" text-anchor="middle" fill="#555" font-size="9">%s</text>`+"\n", x(i), y0+panelH+14, esc(shortCommit(e)))
		}
	}
	w("</svg>\n")
	return b.Bytes()
}

func shortCommit(e historyEntry) string {
	c := e.Commit[:min(7, len(e.Commit))]
	if e.Dirty {
		c += "+"
	}
	return c
}

// historyMarkdown writes the history section: the chart and the last runs.
func (r *report) historyMarkdown(b *bytes.Buffer, img string) {
	if len(r.history) == 0 {
		return
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## History\n\n")
	w("Every full `make bench` appends its headline figures, with the commit (`+` when the working tree had\n")
	w("changes) and the machine, to [bench-history.jsonl](bench-history.jsonl); runs from before it existed are\n")
	w("backfilled from the committed benchmarks.json. `make bench-compare A=<commit or line> B=<commit or line>`\n")
	w("prints two runs side by side (no arguments: the last two).\n\n")
	w("![figures across runs](%s/bench-history.svg)\n\n", img)
	w("| run | commit | machine | CPU/order ms | Go ms | ÷ floor | orders/s | order p95 @80%% | cached ÷ go-redis | cached÷uncached ÷ bound |\n")
	w("|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	from := max(0, len(r.history)-10)
	for i := from; i < len(r.history); i++ {
		e := r.history[i]
		f := func(k string) string {
			if v, ok := e.Figures[k]; ok {
				return num(v)
			}
			return "–"
		}
		w("| %d %s | %s | %d × %s | %s | %s | %s | %s | %s | %s | %s |\n", i+1, e.Date[:min(10, len(e.Date))], shortCommit(e),
			e.Machine.NProc, e.Machine.CPUModel, f("cpu_per_order_ms"), f("go_cpu_per_order_ms"), f("cpu_over_floor"),
			f("orders_per_s"), f("order_p95_80pct_ms"), f("cached_over_redisget"), f("cached_over_uncached_of_bound"))
	}
	w("\n")
}
