package faults

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v4"

	"github.com/orderflow/orderflow/pkg/smtptest"
)

// scrapeInterval is how often the suite's Prometheus scrapes the stack (2 s
// instead of make observe's 5 s), and evalInterval how often it evaluates
// the rules, so that an alert fires within seconds of its for: and the
// alert phase stays short. The rules' for: are the product's, unchanged.
// Not 1 s: a scrape may take no longer than its interval, and on a busy
// 2-core machine scrapes took up to 2.3 s; a failed scrape makes the
// series stale, and restarts the for: of every alert that reads it.
const (
	scrapeInterval = 2 * time.Second
	evalInterval   = time.Second
)

// pollInterval is how often the suite reads Prometheus's active alerts.
const pollInterval = 100 * time.Millisecond

// monitor is a Prometheus and an Alertmanager beside the stack: Debian's
// binaries (scripts/test-faults.sh installs them when missing), scraping
// the five services at their ports with the rule files make observe loads
// (deploy/prometheus/rules), and sending to an Alertmanager with the
// routes of deploy/alertmanager/alertmanager.yml, whose e-mails go to an
// SMTP server of the suite. A goroutine records every alert's episodes.
type monitor struct {
	t         *testing.T
	prom, am  string // base URLs
	smtp      *smtptest.Server
	rules     map[string]alertRule
	stop      chan struct{}
	wg        sync.WaitGroup
	mu        sync.Mutex
	episodes  []*episode
	open      map[string]*episode // the episode each active alert is in, by key
	pollError error
}

// alertRule is what the suite reads of an alerting rule.
type alertRule struct {
	name     string
	forDur   time.Duration
	severity string
	slo      string
}

// symptom reports whether the rule is an SLO alert: it reads order
// creation's error or latency budget, which every fault that fails or slows
// orders burns, over windows of 5 minutes to 3 days.
func (r alertRule) symptom() bool { return r.slo != "" }

// episode is one time an alert was active: pending from activeAt, firing
// from fired (zero if it never fired), gone at resolved (zero while active).
type episode struct {
	name     string
	labels   map[string]string
	activeAt time.Time
	fired    time.Time
	resolved time.Time
}

func (e *episode) String() string {
	var ls []string
	for _, k := range slices.Sorted(maps.Keys(e.labels)) {
		if k != "alertname" && k != "severity" && k != "slo" {
			ls = append(ls, k+"="+e.labels[k])
		}
	}
	return e.name + "{" + strings.Join(ls, ",") + "}"
}

// firingDuring reports whether the episode fired at some time in [from, to].
func (e *episode) firingDuring(from, to time.Time) bool {
	if e.fired.IsZero() || e.fired.After(to) {
		return false
	}
	return e.resolved.IsZero() || !e.resolved.Before(from)
}

// lookBin returns the path of the first of names found: in $env, else on
// PATH; it fails the test with how to install it.
func lookBin(t *testing.T, env, pkg string, names ...string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	t.Fatalf("%s not found (set %s, or install Debian's %s: `sudo apt-get install %s`; make test-faults installs it)",
		names[0], env, pkg, pkg)
	return ""
}

// startMonitor starts Alertmanager and Prometheus for s, on free ports with
// their data in s.dir, stopped when the test ends.
func startMonitor(s *stack) *monitor {
	t := s.t
	t.Helper()
	promBin := lookBin(t, "PROMETHEUS_BIN", "prometheus", "prometheus")
	amBin := lookBin(t, "ALERTMANAGER_BIN", "prometheus-alertmanager", "prometheus-alertmanager", "alertmanager")
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	m := &monitor{t: t, smtp: smtptest.Start(t), stop: make(chan struct{}), open: map[string]*episode{}}
	amPort, promPort := freePort(t), freePort(t)
	m.am, m.prom = fmt.Sprintf("http://127.0.0.1:%d", amPort), fmt.Sprintf("http://127.0.0.1:%d", promPort)

	amConfig := filepath.Join(s.dir, "alertmanager.yml")
	writeFile(t, amConfig, alertmanagerConfig(t, filepath.Join(root, "deploy/alertmanager/alertmanager.yml"), m.smtp.Addr()))
	startDaemon(t, s.dir, "alertmanager", m.am+"/-/ready", exec.Command(amBin,
		"--config.file="+amConfig, "--storage.path="+filepath.Join(s.dir, "alertmanager-data"),
		"--cluster.listen-address=", fmt.Sprintf("--web.listen-address=127.0.0.1:%d", amPort)))

	ruleFiles := productRuleFiles(t, filepath.Join(root, "deploy/prometheus/prometheus.yml"))
	m.rules = readAlertRules(t, ruleFiles)
	promConfig := filepath.Join(s.dir, "prometheus.yml")
	writeFile(t, promConfig, prometheusConfig(t, s, ruleFiles, fmt.Sprintf("127.0.0.1:%d", amPort)))
	startDaemon(t, s.dir, "prometheus", m.prom+"/-/ready", exec.Command(promBin,
		"--config.file="+promConfig, "--storage.tsdb.path="+filepath.Join(s.dir, "prometheus-data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", promPort)))

	m.wg.Go(m.poll)
	t.Cleanup(func() {
		close(m.stop)
		m.wg.Wait()
	})
	m.awaitTargetsUp()
	return m
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// startDaemon starts cmd, logging to dir/name.log, waits until ready
// answers 200, and stops it (SIGTERM) when the test ends.
func startDaemon(t *testing.T, dir, name, ready string, cmd *exec.Cmd) {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s (%s): %v", name, cmd.Path, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-done:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("%s exited during start-up:\n%s", name, b)
		default:
		}
		if resp, err := http.Get(ready); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready at %s within 60s (log: %s)", name, ready, logPath)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// alertmanagerConfig is the product's Alertmanager configuration with two
// changes: mail goes to the suite's SMTP server, and every route groups for
// 1 s instead of 10-30 s (and sends a group's changes after 1 s instead of
// a minute), so a cause alert's mail arrives while its fault lasts. The
// routes, receivers and inhibitions are the product's.
func alertmanagerConfig(t *testing.T, path, smtpAddr string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	global, ok := c["global"].(map[string]any)
	if !ok {
		t.Fatalf("%s has no global section", path)
	}
	global["smtp_smarthost"] = smtpAddr
	var shorten func(route map[string]any)
	shorten = func(route map[string]any) {
		for _, k := range []string{"group_wait", "group_interval"} {
			route[k] = "1s"
		}
		routes, _ := route["routes"].([]any)
		for _, r := range routes {
			if sub, ok := r.(map[string]any); ok {
				shorten(sub)
			}
		}
	}
	route, ok := c["route"].(map[string]any)
	if !ok {
		t.Fatalf("%s has no route", path)
	}
	shorten(route)
	out, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// productRuleFiles returns the absolute paths of the rule files the
// product's Prometheus configuration loads.
func productRuleFiles(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		RuleFiles []string `yaml:"rule_files"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(c.RuleFiles) == 0 {
		t.Fatalf("%s loads no rule file", path)
	}
	var out []string
	for _, f := range c.RuleFiles {
		out = append(out, filepath.Join(filepath.Dir(path), f))
	}
	return out
}

// readAlertRules reads the alerting rules of the rule files, by name.
func readAlertRules(t *testing.T, files []string) map[string]alertRule {
	t.Helper()
	out := map[string]alertRule{}
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var f struct {
			Groups []struct {
				Rules []struct {
					Alert  string            `yaml:"alert"`
					For    string            `yaml:"for"`
					Labels map[string]string `yaml:"labels"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		}
		if err := yaml.Unmarshal(b, &f); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, g := range f.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" {
					continue
				}
				var d time.Duration
				if r.For != "" {
					if d, err = time.ParseDuration(r.For); err != nil {
						t.Fatalf("%s: %s has for: %q: %v", path, r.Alert, r.For, err)
					}
				}
				out[r.Alert] = alertRule{name: r.Alert, forDur: d, severity: r.Labels["severity"], slo: r.Labels["slo"]}
			}
		}
	}
	return out
}

// prometheusConfig scrapes the stack's five services every scrapeInterval,
// under the job names of deploy/prometheus/prometheus.yml (the service
// names), and evaluates the product's rule files every evalInterval.
func prometheusConfig(t *testing.T, s *stack, ruleFiles []string, alertmanager string) []byte {
	t.Helper()
	type staticConfig struct {
		Targets []string `yaml:"targets"`
	}
	type scrapeConfig struct {
		JobName       string         `yaml:"job_name"`
		StaticConfigs []staticConfig `yaml:"static_configs"`
	}
	c := struct {
		Global   map[string]string `yaml:"global"`
		Rules    []string          `yaml:"rule_files"`
		Alerting struct {
			Alertmanagers []struct {
				StaticConfigs []staticConfig `yaml:"static_configs"`
			} `yaml:"alertmanagers"`
		} `yaml:"alerting"`
		Scrape []scrapeConfig `yaml:"scrape_configs"`
	}{
		Global: map[string]string{"scrape_interval": scrapeInterval.String(), "scrape_timeout": scrapeInterval.String(),
			"evaluation_interval": evalInterval.String()},
		Rules: ruleFiles,
	}
	c.Alerting.Alertmanagers = append(c.Alerting.Alertmanagers, struct {
		StaticConfigs []staticConfig `yaml:"static_configs"`
	}{[]staticConfig{{Targets: []string{alertmanager}}}})
	for _, name := range services {
		c.Scrape = append(c.Scrape, scrapeConfig{JobName: name,
			StaticConfigs: []staticConfig{{Targets: []string{fmt.Sprintf("127.0.0.1:%d", s.ports[name])}}}})
	}
	b, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// getJSON GETs u and decodes its JSON answer into dst.
func getJSON(u string, dst any) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(dst)
}

// awaitTargetsUp waits until Prometheus scraped every service once.
func (m *monitor) awaitTargetsUp() {
	m.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var r struct {
			Data struct {
				ActiveTargets []struct {
					Labels    map[string]string `json:"labels"`
					Health    string            `json:"health"`
					LastError string            `json:"lastError"`
				} `json:"activeTargets"`
			} `json:"data"`
		}
		err := getJSON(m.prom+"/api/v1/targets", &r)
		up := 0
		var down []string
		for _, tg := range r.Data.ActiveTargets {
			if tg.Health == "up" {
				up++
			} else {
				down = append(down, tg.Labels["job"]+": "+tg.Health+" "+tg.LastError)
			}
		}
		if err == nil && up == len(services) {
			return
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("Prometheus: %d of %d targets up after 30s (%v; %v)", up, len(services), err, down)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// poll reads Prometheus's active alerts every pollInterval and records
// their episodes until the monitor stops.
func (m *monitor) poll() {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-tick.C:
		}
		var r struct {
			Data struct {
				Alerts []struct {
					Labels   map[string]string `json:"labels"`
					State    string            `json:"state"`
					ActiveAt time.Time         `json:"activeAt"`
				} `json:"alerts"`
			} `json:"data"`
		}
		err := getJSON(m.prom+"/api/v1/alerts", &r)
		now := time.Now()
		m.mu.Lock()
		if err != nil {
			m.pollError = err
			m.mu.Unlock()
			continue
		}
		active := map[string]bool{}
		for _, a := range r.Data.Alerts {
			key := alertKey(a.Labels)
			active[key] = true
			e := m.open[key]
			if e == nil {
				e = &episode{name: a.Labels["alertname"], labels: a.Labels, activeAt: a.ActiveAt}
				m.open[key] = e
				m.episodes = append(m.episodes, e)
			}
			if a.State == "firing" && e.fired.IsZero() {
				e.fired = now
			}
		}
		for key, e := range m.open {
			if !active[key] {
				e.resolved = now
				delete(m.open, key)
			}
		}
		m.mu.Unlock()
	}
}

func alertKey(labels map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		fmt.Fprintf(&b, "%s=%q,", k, labels[k])
	}
	return b.String()
}

// alertMatch selects alerts: by name, and by the labels given (others may
// be anything).
type alertMatch struct {
	name   string
	labels map[string]string
}

func (a alertMatch) matches(e *episode) bool {
	if e.name != a.name {
		return false
	}
	for k, v := range a.labels {
		if e.labels[k] != v {
			return false
		}
	}
	return true
}

func (a alertMatch) String() string {
	var ls []string
	for _, k := range slices.Sorted(maps.Keys(a.labels)) {
		ls = append(ls, k+"="+a.labels[k])
	}
	return a.name + "{" + strings.Join(ls, ",") + "}"
}

// alertWant is the alert a fault must fire, and what else it may fire.
type alertWant struct {
	alertMatch
	// lead is how long the fault must have lasted before the alert's
	// expression can hold at all: the breaker's failed calls, the outbox
	// lag's 30 s threshold, a rate's window filling. Firing is due within
	// lead + for: + two scrape intervals of the fault being in place.
	lead time.Duration
	// resolveWithin bounds the time from the heal until the alert is gone:
	// how long the expression can stay true once the cause is healed (a
	// breaker's probe delay, a rate's window).
	resolveWithin time.Duration
	// also are alerts the fault causes too, downstream of the one it must
	// fire: they may fire, and are listed; any other cause alert firing
	// during the fault fails it.
	also []alertMatch
}

// episodes returns a copy of the episodes recorded so far.
func (m *monitor) snapshot() []episode {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]episode, len(m.episodes))
	for i, e := range m.episodes {
		out[i] = *e
	}
	return out
}

// awaitFiring waits until an alert matching want fires after since, until
// deadline, and returns its episode.
func (m *monitor) awaitFiring(want alertMatch, since, deadline time.Time) (episode, bool) {
	for {
		for _, e := range m.snapshot() {
			if want.matches(&e) && !e.fired.IsZero() && e.fired.After(since) {
				return e, true
			}
		}
		if time.Now().After(deadline) {
			return episode{}, false
		}
		time.Sleep(pollInterval)
	}
}

// awaitResolved waits until no alert matching want is active, for at
// most bound, and returns when the last of them went.
func (m *monitor) awaitResolved(want alertMatch, bound time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(bound)
	for {
		active, last := false, time.Time{}
		for _, e := range m.snapshot() {
			if !want.matches(&e) {
				continue
			}
			if e.resolved.IsZero() {
				active = true
			} else if e.resolved.After(last) {
				last = e.resolved
			}
		}
		if !active {
			return last, true
		}
		if time.Now().After(deadline) {
			return time.Time{}, false
		}
		time.Sleep(pollInterval)
	}
}

// awaitQuiet waits, for at most bound, until no cause alert fires, so
// that what the next fault fires is its own; it returns the alerts still
// firing at the deadline. A pending one may be left: between two faults
// the load stops, and a rate over a 2m window can stay below its threshold
// until the next fault's load moves it (CacheHitRatioCollapse after
// inventory's restart with a cold cache); one that goes on to fire during
// the next fault is unrelated to it, and fails it.
func (m *monitor) awaitQuiet(bound time.Duration) []string {
	deadline := time.Now().Add(bound)
	for {
		var active []string
		for _, e := range m.snapshot() {
			if e.resolved.IsZero() && !e.fired.IsZero() && !m.rules[e.name].symptom() {
				active = append(active, e.String())
			}
		}
		if len(active) == 0 || time.Now().After(deadline) {
			return active
		}
		time.Sleep(pollInterval)
	}
}

// firedBetween returns the episodes that fired at some time in [from, to].
func (m *monitor) firedBetween(from, to time.Time) []episode {
	var out []episode
	for _, e := range m.snapshot() {
		if e.firingDuring(from, to) {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].fired.Before(out[j].fired) })
	return out
}

// inAlertmanager reports whether Alertmanager holds an active alert
// matching want, waiting for at most bound.
func (m *monitor) inAlertmanager(want alertMatch, bound time.Duration) error {
	deadline := time.Now().Add(bound)
	filter := url.Values{}
	filter.Add("filter", fmt.Sprintf("alertname=%q", want.name))
	for k, v := range want.labels {
		filter.Add("filter", fmt.Sprintf("%s=%q", k, v))
	}
	for {
		var alerts []struct {
			Status struct {
				State string `json:"state"`
			} `json:"status"`
		}
		err := getJSON(m.am+"/api/v2/alerts?"+filter.Encode(), &alerts)
		if err == nil {
			for _, a := range alerts {
				if a.Status.State == "active" {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("Alertmanager: %w", err)
			}
			return fmt.Errorf("Alertmanager has no active %s within %v of it firing (%d listed)", want, bound, len(alerts))
		}
		time.Sleep(pollInterval)
	}
}

// mailed waits, for at most bound, for Alertmanager's e-mail announcing
// name firing, among the mails after the first seenBefore; it returns its
// subject.
func (m *monitor) mailed(name string, seenBefore int, bound time.Duration) (string, error) {
	deadline := time.Now().Add(bound)
	for {
		msgs := m.smtp.Messages()
		for _, msg := range msgs[min(seenBefore, len(msgs)):] {
			subject := msg.Header().Get("Subject")
			if strings.HasPrefix(subject, "[FIRING:") && strings.Contains(subject, " "+name+" ") {
				return subject, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no e-mail \"[FIRING:…] %s …\" arrived within %v of the alert reaching Alertmanager (%d mails in all)",
				name, bound, len(msgs))
		}
		time.Sleep(pollInterval)
	}
}
