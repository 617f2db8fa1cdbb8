// Package scripts checks the fault switchboard of make dev (chaos.sh)
// against its documentation without a running stack: every fault the
// script knows is offered by make chaos, printed by make dev and has its
// section in docs/game-days.md (and the other way round), the alerts the
// script and the page tell an operator to watch are alert rules that exist
// in deploy/prometheus/rules, and the script is shellcheck-clean.
package scripts

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// repoRoot is the repository root as seen from this package's directory.
const repoRoot = ".."

// chaos runs scripts/chaos.sh with args and a throwaway RUN_DIR, so the
// test neither needs nor touches a make dev stack.
func chaos(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{"chaos.sh"}, args...)...)
	cmd.Env = append(os.Environ(), "RUN_DIR="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), errors.New(strings.TrimSpace(err.Error() + ": " + stderr.String()))
	}
	return string(out), nil
}

// faultSources are the texts that name the faults.
type faultSources struct {
	names    []string            // chaos.sh list
	watch    map[string][]string // fault → the alerts chaos.sh watch names
	makefile string
	devSh    string
	doc      string          // docs/game-days.md
	rules    map[string]bool // every alert in deploy/prometheus/rules
}

var (
	// faultList is a `FAULT=a|b|c` list, as the Makefile help and dev.sh
	// print it.
	faultList = regexp.MustCompile(`FAULT=([a-z-]+(?:\|[a-z-]+)+)`)
	// docSection is a fault's heading in game-days.md: "## `name`: …".
	docSection = regexp.MustCompile("(?m)^## `([a-z-]+)`")
	// docAlerts is a section's "**Alerts:** `A` …, `B` …" paragraph: the
	// alerts the fault fired.
	docAlerts = regexp.MustCompile(`(?ms)^\*\*Alerts:\*\*(.*?)(?:\n\n|\z)`)
	// alertName is an alert's name in backticks, CamelCase as the rules
	// spell them.
	alertName = regexp.MustCompile("`([A-Z][a-z]+(?:[A-Z][a-z]+)+)`")
	ruleAlert = regexp.MustCompile(`(?m)^\s*- alert:\s*(\S+)\s*$`)
)

// problems returns one message for each way the sources disagree.
func problems(s faultSources) []string {
	var msgs []string
	lists := []struct{ where, text string }{
		{"Makefile (the chaos target's help)", s.makefile},
		{"scripts/dev.sh (its closing message)", s.devSh},
	}
	for _, l := range lists {
		where := l.where
		m := faultList.FindStringSubmatch(l.text)
		if m == nil {
			msgs = append(msgs, where+" names no FAULT=a|b|… list")
			continue
		}
		if diff := cmp.Diff(s.names, strings.Split(m[1], "|")); diff != "" {
			msgs = append(msgs, where+": its faults differ from chaos.sh list (-chaos.sh +"+where+"):\n"+diff)
		}
	}

	var documented []string
	sections := map[string]string{}
	idx := docSection.FindAllStringSubmatchIndex(s.doc, -1)
	for i, m := range idx {
		name := s.doc[m[2]:m[3]]
		end := len(s.doc)
		if i+1 < len(idx) {
			end = idx[i+1][0]
		}
		documented = append(documented, name)
		sections[name] = s.doc[m[0]:end]
	}
	if diff := cmp.Diff(s.names, documented); diff != "" {
		msgs = append(msgs, "docs/game-days.md: its fault sections (## `name`: …) differ from chaos.sh list (-chaos.sh +doc):\n"+diff)
	}
	for _, name := range s.names {
		sec, ok := sections[name]
		if !ok {
			continue
		}
		if !strings.Contains(sec, "make chaos FAULT="+name+"\n") {
			msgs = append(msgs, "docs/game-days.md: the section of "+name+" does not show the command make chaos FAULT="+name)
		}
		al := docAlerts.FindAllStringSubmatch(sec, -1)
		if len(al) != 1 {
			msgs = append(msgs, "docs/game-days.md: the section of "+name+" has no single **Alerts:** paragraph")
			continue
		}
		var inDoc []string
		for _, b := range alertName.FindAllStringSubmatch(al[0][1], -1) {
			inDoc = append(inDoc, b[1])
		}
		slices.Sort(inDoc)
		inDoc = slices.Compact(inDoc)
		want := slices.Sorted(slices.Values(s.watch[name]))
		if diff := cmp.Diff(want, inDoc); diff != "" {
			msgs = append(msgs, "docs/game-days.md: the alerts of "+name+" differ from chaos.sh watch "+name+" (-chaos.sh +doc):\n"+diff)
		}
	}
	for _, name := range s.names {
		for _, a := range s.watch[name] {
			if !s.rules[a] {
				msgs = append(msgs, "chaos.sh watch "+name+" names the alert "+a+", which no rule in deploy/prometheus/rules defines")
			}
		}
	}
	for _, m := range alertName.FindAllStringSubmatch(s.doc, -1) {
		if !s.rules[m[1]] && !slices.Contains(msgs, "docs/game-days.md names the alert "+m[1]+", which no rule in deploy/prometheus/rules defines") {
			msgs = append(msgs, "docs/game-days.md names the alert "+m[1]+", which no rule in deploy/prometheus/rules defines")
		}
	}
	return msgs
}

// repoSources reads the sources from the repository and chaos.sh.
func repoSources(t *testing.T) faultSources {
	t.Helper()
	read := func(path string) string {
		b, err := os.ReadFile(filepath.Join(repoRoot, path))
		if err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		return string(b)
	}
	out, err := chaos(t, "list")
	if err != nil {
		t.Fatalf("chaos.sh list: %v", err)
	}
	s := faultSources{
		names:    strings.Fields(out),
		watch:    map[string][]string{},
		makefile: read("Makefile"),
		devSh:    read("scripts/dev.sh"),
		doc:      read("docs/game-days.md"),
		rules:    map[string]bool{},
	}
	if len(s.names) == 0 {
		t.Fatal("chaos.sh list printed no fault")
	}
	for _, name := range s.names {
		out, err := chaos(t, "watch", name)
		if err != nil {
			t.Fatalf("chaos.sh watch %s: %v", name, err)
		}
		_, alerts, ok := strings.Cut(out, "\nalerts:")
		if !ok {
			t.Fatalf("chaos.sh watch %s prints no alerts: line:\n%s", name, out)
		}
		alerts, _, _ = strings.Cut(alerts, ":") // "none: …" names none
		for _, a := range strings.Split(alerts, ",") {
			if a = strings.TrimSpace(a); a != "" && a != "none" {
				s.watch[name] = append(s.watch[name], a)
			}
		}
	}
	files, err := filepath.Glob(filepath.Join(repoRoot, "deploy/prometheus/rules/*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.yml") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ruleAlert.FindAllStringSubmatch(string(b), -1) {
			s.rules[m[1]] = true
		}
	}
	if len(s.rules) == 0 {
		t.Fatal("found no alert rule in deploy/prometheus/rules/*.yml")
	}
	return s
}

func TestChaos_FaultsDocumented(t *testing.T) {
	t.Parallel()
	for _, msg := range problems(repoSources(t)) {
		t.Error(msg)
	}
}

// TestChaos_ProblemsCanFail breaks each source in turn: a check that
// cannot see the break would pass whatever the files say.
func TestChaos_ProblemsCanFail(t *testing.T) {
	t.Parallel()
	good := repoSources(t)
	if msgs := problems(good); len(msgs) > 0 {
		t.Fatalf("the repository's sources disagree; TestChaos_FaultsDocumented says how")
	}
	first, last := good.names[0], good.names[len(good.names)-1]
	var alerted string // a fault that names an alert
	for _, n := range good.names {
		if len(good.watch[n]) > 0 {
			alerted = n
			break
		}
	}
	if alerted == "" {
		t.Fatal("chaos.sh watch names no alert for any fault")
	}
	cases := []struct {
		name   string
		mutate func(*faultSources)
		want   string
	}{
		{"a fault missing from the Makefile", func(s *faultSources) {
			s.makefile = strings.Replace(s.makefile, "|"+last, "", 1)
		}, "Makefile (the chaos target's help): its faults differ"},
		{"dev.sh printing no list", func(s *faultSources) {
			s.devSh = faultList.ReplaceAllString(s.devSh, "")
		}, "scripts/dev.sh (its closing message) names no FAULT"},
		{"a fault without a doc section", func(s *faultSources) {
			s.doc = strings.Replace(s.doc, "## `"+first+"`", "## "+first, 1)
		}, "its fault sections (## `name`: …) differ"},
		{"a doc section of an unknown fault", func(s *faultSources) {
			s.doc += "\n## `cpu-hog`: not a fault\n"
		}, "its fault sections (## `name`: …) differ"},
		{"a section without its command", func(s *faultSources) {
			s.doc = strings.ReplaceAll(s.doc, "make chaos FAULT="+first+"\n", "make chaos\n")
		}, "the section of " + first + " does not show the command"},
		{"a section naming another alert", func(s *faultSources) {
			s.watch[alerted] = append(slices.Clone(s.watch[alerted]), "CircuitBreakerOpenForever")
		}, "the alerts of " + alerted + " differ"},
		{"a watched alert with no rule", func(s *faultSources) {
			s.rules = map[string]bool{}
		}, "chaos.sh watch " + alerted + " names the alert"},
		{"a documented alert with no rule", func(s *faultSources) {
			s.doc += "\nIt also fires `QueueBacklogForever`.\n"
		}, "docs/game-days.md names the alert QueueBacklogForever"},
		{"a fired alert missing from a section", func(s *faultSources) {
			s.doc = strings.Replace(s.doc, "**Alerts:**", "Alerts:", 1)
		}, "has no single **Alerts:** paragraph"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := good
			s.watch = map[string][]string{}
			for k, v := range good.watch {
				s.watch[k] = v
			}
			tc.mutate(&s)
			msgs := problems(s)
			if !slices.ContainsFunc(msgs, func(m string) bool { return strings.Contains(m, tc.want) }) {
				t.Errorf("problems() = %q; want one containing %q", msgs, tc.want)
			}
		})
	}
}

// TestChaos_UnknownFault: a mistyped FAULT is refused before anything is
// switched, with the list of faults, and without a stack to ask.
func TestChaos_UnknownFault(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"db-slow"}, {"watch", "db-slow"}} {
		out, err := chaos(t, args...)
		if err == nil || !strings.Contains(err.Error(), "unknown fault 'db-slow': one of db-latency,") {
			t.Errorf("chaos.sh %s = %q, %v; want an error naming the faults", strings.Join(args, " "), out, err)
		}
	}
}

// TestChaos_Shellcheck: chaos.sh (with the lib.sh it sources) has no
// shellcheck finding of any severity.
func TestChaos_Shellcheck(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("shellcheck"); err != nil {
		t.Fatal("shellcheck is not installed: apt-get install shellcheck (make test installs it)")
	}
	cmd := exec.Command("shellcheck", "-x", "chaos.sh")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("shellcheck -x scripts/chaos.sh: %v\n%s", err, out)
	}
}
