// Package prometheus checks the alerting and recording rules in rules/
// against the code and the docs, with no Prometheus running: every metric
// an expression reads is one a service really serves (so a renamed metric
// cannot leave an alert that never fires), every alert links its runbook
// section in docs/operations.md and has unit tests in rules/*_test.yml
// that make it fire and keep it silent, and both Prometheus configurations
// load every rule file and send to Alertmanager. The rules themselves are
// checked and their unit tests run by promtool in scripts/test.sh.
package prometheus

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"go.opentelemetry.io/otel/metric"
	"go.yaml.in/yaml/v4"

	"github.com/orderflow/orderflow/pkg/dbtest"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/redisconn"
	"github.com/orderflow/orderflow/pkg/resilience"
	"github.com/orderflow/orderflow/pkg/telemetry"
)

// repoRoot is the repository root as seen from this package's directory.
const repoRoot = "../.."

// ruleFile is a Prometheus rule file.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

// rule is a recording rule (Record set) or an alerting rule (Alert set).
type rule struct {
	Record      string            `yaml:"record"`
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// ruleFiles returns the rule files in rules/ (their unit tests, *_test.yml,
// excluded), by name.
func ruleFiles(t *testing.T) map[string]ruleFile {
	t.Helper()
	paths, err := filepath.Glob("rules/*.yml")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]ruleFile{}
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.yml") {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var f ruleFile
		if err := yaml.Unmarshal(b, &f); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		files[filepath.Base(p)] = f
	}
	if len(files) == 0 {
		t.Fatal("deploy/prometheus/rules holds no rule file")
	}
	return files
}

// rules returns every rule of every rule file, with the file it is in.
func rules(t *testing.T) map[string][]rule {
	t.Helper()
	out := map[string][]rule{}
	for name, f := range ruleFiles(t) {
		for _, g := range f.Groups {
			out[name] = append(out[name], g.Rules...)
		}
	}
	return out
}

// promqlKeywords are the words of PromQL that are neither metrics nor
// followed by a parenthesis of arguments.
var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true,
	// Aggregations may put by (…) or without (…) before their argument.
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true,
}

// promqlLabelLists are the words followed by a parenthesised list of label
// names.
var promqlLabelLists = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// metricNames returns the metric names a PromQL expression selects: every
// identifier that is not a function, keyword or label, outside label
// matchers ({…}), ranges ([…]) and strings. The syntax itself is promtool's
// to check.
func metricNames(expr string) ([]string, error) {
	var names []string
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || unicode.IsLetter(rune(c)) }
	isIdent := func(c byte) bool { return isIdentStart(c) || unicode.IsDigit(rune(c)) }
	// skipTo returns the index just past the close that matches the open at
	// i, stepping over strings.
	skipTo := func(i int, open, close byte) (int, error) {
		depth := 0
		for ; i < len(expr); i++ {
			switch c := expr[i]; c {
			case '"', '\'', '`':
				j := i + 1
				for j < len(expr) && expr[j] != c {
					if expr[j] == '\\' && c != '`' {
						j++
					}
					j++
				}
				i = j
			case open:
				depth++
			case close:
				depth--
				if depth == 0 {
					return i + 1, nil
				}
			}
		}
		return 0, fmt.Errorf("unbalanced %c in %q", open, expr)
	}
	nextNonSpace := func(i int) int {
		for i < len(expr) && unicode.IsSpace(rune(expr[i])) {
			i++
		}
		return i
	}
	var err error
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '#':
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			if i, err = skipTo(i, c, c); err != nil {
				return nil, err
			}
		case c == '{':
			if i, err = skipTo(i, '{', '}'); err != nil {
				return nil, err
			}
		case c == '[':
			if i, err = skipTo(i, '[', ']'); err != nil {
				return nil, err
			}
		case unicode.IsDigit(rune(c)) || c == '.':
			// Numbers and durations (1.5, 5m after offset).
			for i < len(expr) && (isIdent(expr[i]) || expr[i] == '.') {
				i++
			}
		case isIdentStart(c):
			start := i
			for i < len(expr) && isIdent(expr[i]) {
				i++
			}
			word := expr[start:i]
			next := nextNonSpace(i)
			switch {
			case promqlLabelLists[strings.ToLower(word)]:
				if next < len(expr) && expr[next] == '(' {
					if i, err = skipTo(next, '(', ')'); err != nil {
						return nil, err
					}
				}
			case promqlKeywords[strings.ToLower(word)]:
			case next < len(expr) && expr[next] == '(':
				// A function call.
			default:
				names = append(names, word)
			}
		default:
			i++
		}
	}
	return names, nil
}

func TestMetricNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		expr string
		want []string
	}{
		{`up == 0`, []string{"up"}},
		{`sum by (job, le) (rate(a_bucket{route="/v1/{id}", le=~"1|1\\.0"}[5m]))`, []string{"a_bucket"}},
		{`histogram_quantile(0.99, sum without (instance) (rate(b[1m] offset 5m)))`, []string{"b"}},
		{`(x:y:ratio_rate1h > (14.4 * 0.001) and z) or vector(0)`, []string{"x:y:ratio_rate1h", "z"}},
		{"a / on (job) group_left (db) b # c d", []string{"a", "b"}},
		{`max(m{s="a}b"}) unless count(n)`, []string{"m", "n"}},
	}
	for _, tt := range tests {
		got, err := metricNames(tt.expr)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("metricNames(%q) = %q, %v; want %q", tt.expr, got, err, tt.want)
		}
	}
}

// instrument is one OpenTelemetry instrument created in the code with a
// literal name.
type instrument struct {
	kind, name, unit string // kind: the Meter method, e.g. Int64ObservableGauge
	pos              string
}

// instrumentKinds are the metric.Meter methods that create an instrument.
var instrumentKinds = map[string]bool{
	"Int64Counter": true, "Int64UpDownCounter": true, "Int64Histogram": true, "Int64Gauge": true,
	"Float64Counter": true, "Float64UpDownCounter": true, "Float64Histogram": true, "Float64Gauge": true,
	"Int64ObservableCounter": true, "Int64ObservableUpDownCounter": true, "Int64ObservableGauge": true,
	"Float64ObservableCounter": true, "Float64ObservableUpDownCounter": true, "Float64ObservableGauge": true,
}

// codeInstruments finds every instrument the services and pkg/ create with
// a literal name: calls of a metric.Meter method, with their
// metric.WithUnit.
func codeInstruments(t *testing.T) []instrument {
	t.Helper()
	var out []instrument
	fset := token.NewFileSet()
	for _, dir := range []string{"pkg", "services"} {
		err := filepath.WalkDir(filepath.Join(repoRoot, dir), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) == 0 {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				kind := sel.Sel.Name
				if !instrumentKinds[kind] {
					return true
				}
				name, ok := stringLit(call.Args[0])
				if !ok {
					return true // a helper passing its parameter on
				}
				in := instrument{kind: kind, name: name, pos: fset.Position(call.Pos()).String()}
				for _, a := range call.Args[1:] {
					if opt, ok := a.(*ast.CallExpr); ok && len(opt.Args) == 1 {
						if s, ok := opt.Fun.(*ast.SelectorExpr); ok && s.Sel.Name == "WithUnit" {
							in.unit, _ = stringLit(opt.Args[0])
						}
					}
				}
				out = append(out, in)
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// register creates in on m the way the code does and gives it a value, so
// the Prometheus exporter serves it under the name a scrape sees.
func register(ctx context.Context, m metric.Meter, in instrument) error {
	unit := metric.WithUnit(in.unit)
	var err error
	switch in.kind {
	case "Int64Counter":
		var c metric.Int64Counter
		if c, err = m.Int64Counter(in.name, unit); err == nil {
			c.Add(ctx, 1)
		}
	case "Int64UpDownCounter":
		var c metric.Int64UpDownCounter
		if c, err = m.Int64UpDownCounter(in.name, unit); err == nil {
			c.Add(ctx, 1)
		}
	case "Int64Histogram":
		var h metric.Int64Histogram
		if h, err = m.Int64Histogram(in.name, unit); err == nil {
			h.Record(ctx, 1)
		}
	case "Int64Gauge":
		var g metric.Int64Gauge
		if g, err = m.Int64Gauge(in.name, unit); err == nil {
			g.Record(ctx, 1)
		}
	case "Float64Counter":
		var c metric.Float64Counter
		if c, err = m.Float64Counter(in.name, unit); err == nil {
			c.Add(ctx, 1)
		}
	case "Float64UpDownCounter":
		var c metric.Float64UpDownCounter
		if c, err = m.Float64UpDownCounter(in.name, unit); err == nil {
			c.Add(ctx, 1)
		}
	case "Float64Histogram":
		var h metric.Float64Histogram
		if h, err = m.Float64Histogram(in.name, unit); err == nil {
			h.Record(ctx, 1)
		}
	case "Float64Gauge":
		var g metric.Float64Gauge
		if g, err = m.Float64Gauge(in.name, unit); err == nil {
			g.Record(ctx, 1)
		}
	case "Int64ObservableCounter":
		_, err = m.Int64ObservableCounter(in.name, unit, metric.WithInt64Callback(observeInt))
	case "Int64ObservableUpDownCounter":
		_, err = m.Int64ObservableUpDownCounter(in.name, unit, metric.WithInt64Callback(observeInt))
	case "Int64ObservableGauge":
		_, err = m.Int64ObservableGauge(in.name, unit, metric.WithInt64Callback(observeInt))
	case "Float64ObservableCounter":
		_, err = m.Float64ObservableCounter(in.name, unit, metric.WithFloat64Callback(observeFloat))
	case "Float64ObservableUpDownCounter":
		_, err = m.Float64ObservableUpDownCounter(in.name, unit, metric.WithFloat64Callback(observeFloat))
	case "Float64ObservableGauge":
		_, err = m.Float64ObservableGauge(in.name, unit, metric.WithFloat64Callback(observeFloat))
	default:
		err = fmt.Errorf("unknown instrument kind %s", in.kind)
	}
	if err != nil {
		return fmt.Errorf("%s: %s %q: %w", in.pos, in.kind, in.name, err)
	}
	return nil
}

func observeInt(_ context.Context, o metric.Int64Observer) error     { o.Observe(1); return nil }
func observeFloat(_ context.Context, o metric.Float64Observer) error { o.Observe(1); return nil }

// scrapedNames returns the sample names h serves on GET /metrics.
func scrapedNames(t *testing.T, h http.Handler) map[string]bool {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics = %d", rec.Code)
	}
	names := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(rec.Body.Bytes()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

// servedNames is every sample name an Orderflow process can serve on
// /metrics: the instruments the code creates (codeInstruments), put through
// the same meter provider and exporter as the services', and those of the
// instrumentation libraries, wired as the services wire them against the
// real PostgreSQL and Redis.
func servedNames(t *testing.T) map[string]bool {
	t.Helper()
	ctx := t.Context()
	setup := func() *telemetry.Telemetry {
		tel, err := telemetry.Setup(ctx, telemetry.Config{Service: "rules-test", Ratio: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
		return tel
	}

	code := setup()
	found := codeInstruments(t)
	for _, in := range found {
		if err := register(ctx, code.MeterFor("rules-test"), in); err != nil {
			t.Fatal(err)
		}
	}
	// The scan must keep finding what the services create, or every rule
	// would be checked against too little.
	for _, want := range []string{"orderflow.http.requests", "orderflow.compensation.needs_attention",
		"orderflow.ratelimit.fail_open", "orderflow.outbox.lag", "orderflow.queue.messages",
		"orderflow.payment.intents.settled"} {
		if !slices.ContainsFunc(found, func(in instrument) bool { return in.name == want }) {
			t.Errorf("the scan of pkg/ and services/ found no instrument %s; found %d others", want, len(found))
		}
	}

	libs := setup()
	pool, err := postgres.Open(ctx, dbtest.NewURL(t, nil), 2, postgres.WithTracer(libs.PgxTracer("rules")))
	if err != nil {
		t.Fatalf("open the test database: %v", err)
	}
	t.Cleanup(pool.Close)
	if err := libs.ObservePool(pool, "rules"); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("SELECT 1: %v", err)
	}
	// A connection refused, for the error counters DatabaseUnavailable
	// reads: nothing listens on port 1.
	if refused, err := postgres.Open(ctx, "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2", 1,
		postgres.WithTracer(libs.PgxTracer("refused"))); err == nil {
		_, _ = refused.Exec(ctx, "SELECT 1")
		refused.Close()
	}
	rdb, err := redisconn.Open("redis://127.0.0.1:6379/0", 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	if err := libs.InstrumentRedis(rdb); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis is needed for this test and does not answer on 127.0.0.1:6379 (start it with `make deps` or `redis-server --daemonize yes`): %v", err)
	}
	d := resilience.New("downstream", resilience.DefaultPolicy(time.Second), http.DefaultTransport, slog.New(slog.DiscardHandler))
	if err := d.Instrument(libs.MeterFor("orderflow/resilience")); err != nil {
		t.Fatal(err)
	}
	h := libs.Middleware(http.NotFoundHandler())
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))

	names := scrapedNames(t, code.MetricsHandler())
	for n := range scrapedNames(t, libs.MetricsHandler()) {
		names[n] = true
	}
	return names
}

// prometheusNames are the series Prometheus makes itself for every target.
var prometheusNames = []string{"up", "scrape_duration_seconds", "scrape_samples_scraped"}

// TestRules_MetricsExist fails when an expression reads a metric no
// Orderflow process serves, or a recorded series no rule records: such a
// rule would never fire.
func TestRules_MetricsExist(t *testing.T) {
	t.Parallel()
	served := servedNames(t)
	all := rules(t)
	recorded := map[string]bool{}
	for _, rs := range all {
		for _, r := range rs {
			if r.Record != "" {
				recorded[r.Record] = true
			}
		}
	}
	checked := 0
	for file, rs := range all {
		for _, r := range rs {
			name := r.Alert + r.Record
			names, err := metricNames(r.Expr)
			if err != nil {
				t.Errorf("%s: %s: %v", file, name, err)
				continue
			}
			if len(names) == 0 {
				t.Errorf("%s: %s reads no metric: %s", file, name, r.Expr)
			}
			for _, m := range names {
				checked++
				switch {
				case strings.Contains(m, ":"):
					if !recorded[m] {
						t.Errorf("%s: %s reads %s, which no recording rule records", file, name, m)
					}
				case !served[m] && !slices.Contains(prometheusNames, m):
					t.Errorf("%s: %s reads %s, which no Orderflow process serves on /metrics", file, name, m)
				}
			}
		}
	}
	if checked < 20 {
		t.Errorf("checked only %d metric names; the expression parser no longer finds them", checked)
	}
}

// runbookParts are the parts every runbook section of operations.md has.
var runbookParts = []string{"**What it means.**", "**What to look at.**", "**What to do.**"}

// runbookSections returns the sections of docs/operations.md by the anchor
// GitHub gives their heading (lower case, punctuation dropped, spaces as
// hyphens; repeats are not expected here), each with its text up to the
// next heading.
func runbookSections(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs/operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]string{}
	var anchor string
	var text strings.Builder
	flush := func() {
		if anchor != "" {
			sections[anchor] = text.String()
		}
		text.Reset()
	}
	inFence := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inFence = !inFence
		}
		title, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " ")
		if inFence || !strings.HasPrefix(line, "#") || !ok {
			text.WriteString(line + "\n")
			continue
		}
		flush()
		var slug strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(title)) {
			switch {
			case r == ' ':
				slug.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				slug.WriteRune(r)
			}
		}
		anchor = slug.String()
	}
	flush()
	return sections
}

// TestRules_Runbooks checks that every alert links its own runbook section
// in docs/operations.md, which says what the alert means, what to look at
// and what to do, and that it has a severity Alertmanager routes and the
// annotations its e-mail shows.
func TestRules_Runbooks(t *testing.T) {
	t.Parallel()
	sections := runbookSections(t)
	alerts := 0
	for file, rs := range rules(t) {
		for _, r := range rs {
			if r.Alert == "" {
				continue
			}
			alerts++
			want := "docs/operations.md#" + strings.ToLower(r.Alert)
			if got := r.Annotations["runbook_url"]; got != want {
				t.Errorf("%s: %s has runbook_url %q; want %q", file, r.Alert, got, want)
			}
			section, ok := sections[strings.ToLower(r.Alert)]
			if !ok {
				t.Errorf("%s: %s has no runbook: docs/operations.md has no heading %q", file, r.Alert, r.Alert)
			}
			for _, part := range runbookParts {
				if ok && !strings.Contains(section, part) {
					t.Errorf("docs/operations.md: the runbook of %s has no %s", r.Alert, part)
				}
			}
			if s := r.Labels["severity"]; s != "page" && s != "ticket" {
				t.Errorf("%s: %s has severity %q; want page or ticket (deploy/alertmanager routes those)", file, r.Alert, s)
			}
			for _, a := range []string{"summary", "description"} {
				if r.Annotations[a] == "" {
					t.Errorf("%s: %s has no %s annotation", file, r.Alert, a)
				}
			}
		}
	}
	if alerts == 0 {
		t.Error("found no alerting rule")
	}
}

// ruleTestFile is a promtool unit test file.
type ruleTestFile struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		Name      string `yaml:"name"`
		AlertRule []struct {
			Alertname string     `yaml:"alertname"`
			ExpAlerts []struct{} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// TestRules_UnitTested checks that the promtool unit tests cover every
// alert both ways: some input makes it fire, some input keeps it silent.
// (scripts/test.sh runs them.)
func TestRules_UnitTested(t *testing.T) {
	t.Parallel()
	paths, err := filepath.Glob("rules/*_test.yml")
	if err != nil {
		t.Fatal(err)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var f ruleTestFile
		if err := yaml.Unmarshal(b, &f); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for _, rf := range f.RuleFiles {
			if _, err := os.Stat(filepath.Join("rules", rf)); err != nil {
				t.Errorf("%s tests %s, which does not exist", p, rf)
			}
		}
		for _, tc := range f.Tests {
			for _, a := range tc.AlertRule {
				if len(a.ExpAlerts) > 0 {
					fires[a.Alertname] = true
				} else {
					silent[a.Alertname] = true
				}
			}
		}
	}
	for file, rs := range rules(t) {
		for _, r := range rs {
			if r.Alert == "" {
				continue
			}
			if !fires[r.Alert] {
				t.Errorf("%s: no test in rules/*_test.yml makes %s fire", file, r.Alert)
			}
			if !silent[r.Alert] {
				t.Errorf("%s: no test in rules/*_test.yml checks that %s stays silent", file, r.Alert)
			}
		}
	}
}

// prometheusConfig is the part of a Prometheus configuration checked here.
type prometheusConfig struct {
	RuleFiles []string `yaml:"rule_files"`
	Alerting  struct {
		Alertmanagers []struct {
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"alertmanagers"`
	} `yaml:"alerting"`
}

// TestConfigs_LoadRulesAndAlert checks that the native and the compose
// configuration load every rule file (by a path relative to the
// configuration, which compose mounts rules/ beside) and send alerts to the
// Alertmanager of their setup.
func TestConfigs_LoadRulesAndAlert(t *testing.T) {
	t.Parallel()
	var want []string
	for name := range ruleFiles(t) {
		want = append(want, "rules/"+name)
	}
	slices.Sort(want)
	for file, alertmanager := range map[string]string{
		"prometheus.yml":         "127.0.0.1:9093",
		"prometheus-compose.yml": "alertmanager:9093",
	} {
		t.Run(file, func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var c prometheusConfig
			if err := yaml.Unmarshal(b, &c); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			got := slices.Sorted(slices.Values(c.RuleFiles))
			if !slices.Equal(got, want) {
				t.Errorf("%s loads rule_files %q; want %q (every rule file, no *_test.yml)", file, got, want)
			}
			var targets []string
			for _, am := range c.Alerting.Alertmanagers {
				for _, sc := range am.StaticConfigs {
					targets = append(targets, sc.Targets...)
				}
			}
			if !slices.Equal(targets, []string{alertmanager}) {
				t.Errorf("%s sends alerts to %q; want [%s]", file, targets, alertmanager)
			}
		})
	}
}
