// Package deploy checks Orderflow's Docker files against the code. There is
// no Docker engine where the tests run, so docker-compose.yml is parsed with
// compose-go and compared with what each service's main.go reads, and the
// Dockerfile, bind mounts and Prometheus config are checked against the
// repository. A compose file that drifts from the code then fails `make test`
// instead of failing a user's `docker compose up`.
package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v4"
)

// repoRoot is the repository root as seen from this package's directory,
// where go test runs.
const repoRoot = ".."

// appService is one Orderflow process in docker-compose.yml.
type appService struct {
	name  string   // compose service name
	dir   string   // source directory, relative to the repository root
	port  uint32   // container port, published on the same host port
	needs []string // components it must wait for until they are healthy
}

// appServices lists the five processes the brief names. The provider has no
// database and no queue, so it waits for nothing.
func appServices() []appService {
	return []appService{
		{name: "order", dir: "services/order", port: 8080, needs: []string{"postgres", "localstack"}},
		{name: "inventory", dir: "services/inventory", port: 8081, needs: []string{"postgres"}},
		{name: "payment", dir: "services/payment", port: 8082, needs: []string{"postgres"}},
		{name: "provider", dir: "services/payment/provider", port: 8090},
		{name: "notification", dir: "services/notification", port: 8083, needs: []string{"postgres", "localstack"}},
	}
}

// loadProject parses a compose file the way `docker compose` does: with the
// loadtest profile and every other one enabled, relative paths resolved
// against workingDir, and a fixed, empty environment, so ${VAR:-default}
// takes its default whatever the developer's shell exports.
func loadProject(ctx context.Context, workingDir string, content []byte) (*types.Project, error) {
	details := types.ConfigDetails{
		WorkingDir: workingDir,
		ConfigFiles: []types.ConfigFile{{
			Filename: filepath.Join(workingDir, "docker-compose.yml"),
			Content:  content,
		}},
		Environment: types.Mapping{},
	}
	return loader.LoadWithContext(ctx, details, func(o *loader.Options) {
		o.SetProjectName("orderflow", true)
		o.Profiles = []string{"*"}
	})
}

// repoProject loads the repository's docker-compose.yml.
func repoProject(t *testing.T) *types.Project {
	t.Helper()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	content, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatalf("read docker-compose.yml: %v", err)
	}
	p, err := loadProject(t.Context(), root, content)
	if err != nil {
		t.Fatalf("load docker-compose.yml: %v", err)
	}
	return p
}

func TestCompose_Services(t *testing.T) {
	t.Parallel()
	p := repoProject(t)
	want := []string{"postgres", "redis", "localstack", "mailpit", "jaeger", "prometheus", "grafana",
		"order", "inventory", "payment", "provider", "notification"}
	for _, name := range want {
		t.Run(name, func(t *testing.T) {
			if _, err := p.GetService(name); err != nil {
				t.Errorf("docker-compose.yml has no service %s: %v", name, err)
			}
		})
	}
}

// envRead is one environment variable a service reads, and the file that
// reads it.
type envRead struct {
	name string
	file string
}

// isReaderMethod reports whether name is a pkg/env Reader method whose first
// argument is the variable's name.
func isReaderMethod(name string) bool {
	switch name {
	case "String", "Required", "Int", "Float", "Bool", "Duration":
		return true
	}
	return false
}

// sharedConfigVars are the variables read by the shared config readers,
// keyed by the import path suffix of the package and the function name.
func sharedConfigVars() map[[2]string][]string {
	return map[[2]string][]string{
		{"/pkg/queue", "ReadConfig"}:     {"AWS_REGION", "AWS_ENDPOINT_URL_SQS", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"},
		{"/pkg/telemetry", "ReadConfig"}: {"OTEL_EXPORTER_OTLP_ENDPOINT"},
		{"/pkg/telemetry", "New"}:        {"OTEL_EXPORTER_OTLP_ENDPOINT"},
	}
}

// envReadsInFile returns the variables one Go file reads: the first
// argument of every String/Required/Int/Float/Bool/Duration call on a
// pkg/env Reader (a variable assigned from env.New, a *env.Reader parameter
// or field, or env.New(...) itself), plus the variables of queue.ReadConfig
// and telemetry.ReadConfig. Calls on anything else, such as flag.String, do
// not count. A Reader call whose name is not a string literal is an error:
// the check must not silently miss a variable.
func envReadsInFile(fset *token.FileSet, filename string, src any) ([]envRead, error) {
	f, err := parser.ParseFile(fset, filename, src, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	imports := map[string]string{} // local name → import path
	for _, imp := range f.Imports {
		path, err := strconv.Unquote(imp.Path.Value)
		if err != nil {
			return nil, err
		}
		name := path[strings.LastIndex(path, "/")+1:]
		if imp.Name != nil {
			name = imp.Name.Name
		}
		imports[name] = path
	}
	// pkgFunc reports the import path and name of a call such as env.New(…).
	pkgFunc := func(e ast.Expr) (path, fn string) {
		call, ok := e.(*ast.CallExpr)
		if !ok {
			return "", ""
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return "", ""
		}
		pkg, ok := sel.X.(*ast.Ident)
		if !ok {
			return "", ""
		}
		return imports[pkg.Name], sel.Sel.Name
	}
	isEnvNew := func(e ast.Expr) bool {
		path, fn := pkgFunc(e)
		return strings.HasSuffix(path, "/pkg/env") && fn == "New"
	}
	isReaderType := func(e ast.Expr) bool {
		if star, ok := e.(*ast.StarExpr); ok {
			e = star.X
		}
		sel, ok := e.(*ast.SelectorExpr)
		if !ok || sel.Sel.Name != "Reader" {
			return false
		}
		pkg, ok := sel.X.(*ast.Ident)
		return ok && strings.HasSuffix(imports[pkg.Name], "/pkg/env")
	}

	// First pass: the names that hold a Reader.
	readers := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.AssignStmt:
			for i, rhs := range n.Rhs {
				if i >= len(n.Lhs) || !isEnvNew(rhs) {
					continue
				}
				if id, ok := n.Lhs[i].(*ast.Ident); ok {
					readers[id.Name] = true
				}
			}
		case *ast.ValueSpec:
			for i, name := range n.Names {
				if (i < len(n.Values) && isEnvNew(n.Values[i])) || (n.Type != nil && isReaderType(n.Type)) {
					readers[name.Name] = true
				}
			}
		case *ast.Field:
			if isReaderType(n.Type) {
				for _, name := range n.Names {
					readers[name.Name] = true
				}
			}
		}
		return true
	})

	// Second pass: the calls.
	var reads []envRead
	var errs []error
	shared := sharedConfigVars()
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		path, fn := pkgFunc(call)
		for key, vars := range shared {
			if strings.HasSuffix(path, key[0]) && fn == key[1] {
				for _, v := range vars {
					reads = append(reads, envRead{name: v, file: filename})
				}
			}
		}
		if !isReaderMethod(sel.Sel.Name) {
			return true
		}
		id, isIdent := sel.X.(*ast.Ident)
		if !(isIdent && readers[id.Name]) && !isEnvNew(sel.X) {
			return true
		}
		var lit *ast.BasicLit
		if len(call.Args) > 0 {
			lit, _ = call.Args[0].(*ast.BasicLit)
		}
		if lit == nil || lit.Kind != token.STRING {
			errs = append(errs, fmt.Errorf("%s: %s call whose variable name is not a string literal",
				fset.Position(call.Pos()), sel.Sel.Name))
			return true
		}
		name, err := strconv.Unquote(lit.Value)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", fset.Position(lit.Pos()), err))
			return true
		}
		reads = append(reads, envRead{name: name, file: filename})
		return true
	})
	return reads, errors.Join(errs...)
}

// envReadsInDir returns the variables the command in dir (relative to the
// repository root) reads, from its main.go and any other non-test file of
// package main beside it.
func envReadsInDir(dir string) ([]envRead, error) {
	if _, err := os.Stat(filepath.Join(repoRoot, dir, "main.go")); err != nil {
		return nil, fmt.Errorf("%s/main.go is missing, so what it reads cannot be checked: %w", dir, err)
	}
	entries, err := os.ReadDir(filepath.Join(repoRoot, dir))
	if err != nil {
		return nil, err
	}
	fset := token.NewFileSet()
	var reads []envRead
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		src, err := os.ReadFile(filepath.Join(repoRoot, dir, e.Name()))
		if err != nil {
			return nil, err
		}
		r, err := envReadsInFile(fset, dir+"/"+e.Name(), src)
		if err != nil {
			return nil, err
		}
		reads = append(reads, r...)
	}
	return reads, nil
}

// missingEnv returns one message for each variable in reads that compose
// service svc does not set to a value.
func missingEnv(p *types.Project, svc string, reads []envRead) []string {
	s, err := p.GetService(svc)
	if err != nil {
		return []string{fmt.Sprintf("docker-compose.yml has no service %s", svc)}
	}
	var msgs []string
	seen := map[string]bool{}
	for _, r := range reads {
		if seen[r.name] {
			continue
		}
		seen[r.name] = true
		switch v, ok := s.Environment[r.name]; {
		case !ok || v == nil:
			msgs = append(msgs, fmt.Sprintf("compose service %s does not set %s (read by %s)", svc, r.name, r.file))
		case *v == "":
			msgs = append(msgs, fmt.Sprintf("compose service %s sets %s to an empty value (read by %s)", svc, r.name, r.file))
		}
	}
	return msgs
}

func TestCompose_Environment(t *testing.T) {
	t.Parallel()
	p := repoProject(t)
	for _, svc := range appServices() {
		t.Run(svc.name, func(t *testing.T) {
			reads, err := envReadsInDir(svc.dir)
			if err != nil {
				t.Fatalf("compose service %s: %v", svc.name, err)
			}
			// A parser that finds nothing would make this test pass
			// whatever compose says.
			if n := len(unique(reads)); n < 3 {
				t.Fatalf("found only %d variables read by %s (%v); the parser no longer understands its config code",
					n, svc.dir, unique(reads))
			}
			t.Logf("%s reads %s", svc.dir, strings.Join(unique(reads), " "))
			for _, msg := range missingEnv(p, svc.name, reads) {
				t.Error(msg)
			}
		})
	}
}

// unique returns the distinct variable names in reads, in order.
func unique(reads []envRead) []string {
	var names []string
	for _, r := range reads {
		if !slices.Contains(names, r.name) {
			names = append(names, r.name)
		}
	}
	return names
}

// TestMissingEnv proves the environment check can fail: a tiny service and a
// tiny compose file that leaves some of its variables out.
func TestMissingEnv(t *testing.T) {
	t.Parallel()
	const src = `package main

import (
	"flag"
	"os"

	"github.com/orderflow/orderflow/pkg/env"
	"github.com/orderflow/orderflow/pkg/queue"
)

func readConfig(getenv func(string) string) {
	r := env.New(getenv)
	_ = r.String("SHOP_ADDR", ":9000")
	_ = r.Duration("SHOP_CALL_TIMEOUT", 0)
	_ = r.Required("SHOP_DATABASE_URL")
	_ = more(r)
	_ = env.New(getenv).Bool("SHOP_OUTAGE", false)
	_ = queue.ReadConfig(getenv)
	_ = flag.String("addr", "", "not an environment variable")
	_ = os.Getenv
}

func more(r *env.Reader) int { return r.Int("SHOP_DB_MAX_CONNS", 1) }
`
	reads, err := envReadsInFile(token.NewFileSet(), "services/shop/main.go", src)
	if err != nil {
		t.Fatal(err)
	}
	wantNames := []string{"SHOP_ADDR", "SHOP_CALL_TIMEOUT", "SHOP_DATABASE_URL", "SHOP_OUTAGE",
		"AWS_REGION", "AWS_ENDPOINT_URL_SQS", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "SHOP_DB_MAX_CONNS"}
	if diff := cmp.Diff(wantNames, unique(reads)); diff != "" {
		t.Errorf("envReadsInFile names (-want +got):\n%s", diff)
	}

	tests := []struct {
		name    string
		compose string
		want    []string
	}{
		{
			name: "all set",
			compose: `
services:
  shop:
    image: shop
    environment:
      SHOP_ADDR: ":9000"
      SHOP_CALL_TIMEOUT: 5s
      SHOP_DATABASE_URL: postgres://db/shop
      SHOP_DB_MAX_CONNS: "20"
      SHOP_OUTAGE: ${SHOP_OUTAGE:-false}
      AWS_REGION: us-east-1
      AWS_ENDPOINT_URL_SQS: http://localstack:4566
      AWS_ACCESS_KEY_ID: test
      AWS_SECRET_ACCESS_KEY: test
      LOG_LEVEL: debug
`,
		},
		{
			name: "missing and empty",
			compose: `
services:
  shop:
    image: shop
    environment:
      - SHOP_ADDR=:9000
      - SHOP_DATABASE_URL=
      - SHOP_DB_MAX_CONNS=20
      - SHOP_OUTAGE=false
      - AWS_REGION=us-east-1
      - AWS_ACCESS_KEY_ID=test
      - AWS_SECRET_ACCESS_KEY=test
`,
			want: []string{
				"compose service shop does not set SHOP_CALL_TIMEOUT (read by services/shop/main.go)",
				"compose service shop sets SHOP_DATABASE_URL to an empty value (read by services/shop/main.go)",
				"compose service shop does not set AWS_ENDPOINT_URL_SQS (read by services/shop/main.go)",
			},
		},
		{
			name:    "no such service",
			compose: "services:\n  other:\n    image: other\n",
			want:    []string{"docker-compose.yml has no service shop"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := loadProject(t.Context(), t.TempDir(), []byte(tt.compose))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, missingEnv(p, "shop", reads)); diff != "" {
				t.Errorf("missingEnv (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEnvReadsInFile_NonLiteralName(t *testing.T) {
	t.Parallel()
	const src = `package main

import "github.com/orderflow/orderflow/pkg/env"

const key = "SHOP_ADDR"

func readConfig(getenv func(string) string) string {
	return env.New(getenv).String(key, "")
}
`
	_, err := envReadsInFile(token.NewFileSet(), "main.go", src)
	if err == nil || !strings.Contains(err.Error(), "not a string literal") {
		t.Errorf("envReadsInFile(non-literal name) error = %v; want one about a string literal", err)
	}
}

func TestCompose_PortsHealthchecksDependencies(t *testing.T) {
	t.Parallel()
	p := repoProject(t)
	for _, svc := range appServices() {
		t.Run(svc.name, func(t *testing.T) {
			s, err := p.GetService(svc.name)
			if err != nil {
				t.Fatal(err)
			}
			// A replicated service publishes no port itself (its replicas
			// would fight over it): haproxy publishes it in front of them.
			publisher := s
			if s.Deploy != nil && s.Deploy.Replicas != nil && *s.Deploy.Replicas > 1 {
				if len(s.Ports) > 0 {
					t.Errorf("compose service %s has %d replicas and publishes ports %+v; want none (haproxy publishes them)",
						svc.name, *s.Deploy.Replicas, s.Ports)
				}
				if publisher, err = p.GetService("haproxy"); err != nil {
					t.Fatalf("compose service %s has replicas but there is no haproxy service in front: %v", svc.name, err)
				}
			}
			published := false
			for _, port := range publisher.Ports {
				if port.Target == svc.port && port.Published == strconv.Itoa(int(svc.port)) {
					published = true
				}
			}
			if !published {
				t.Errorf("compose service %s does not publish port %d:%d (ports %+v)", publisher.Name, svc.port, svc.port, publisher.Ports)
			}

			if s.HealthCheck == nil || s.HealthCheck.Disable {
				t.Errorf("compose service %s has no healthcheck", svc.name)
			} else {
				want := []string{"CMD", "/healthcheck", fmt.Sprintf("http://127.0.0.1:%d/readyz", svc.port)}
				if diff := cmp.Diff(want, []string(s.HealthCheck.Test)); diff != "" {
					t.Errorf("compose service %s healthcheck test (-want +got):\n%s", svc.name, diff)
				}
				// Migrations and the demo seed run before the listener opens.
				if s.HealthCheck.Interval == nil || s.HealthCheck.StartPeriod == nil {
					t.Errorf("compose service %s healthcheck sets no interval or start_period", svc.name)
				}
			}

			for _, dep := range svc.needs {
				if got := s.DependsOn[dep].Condition; got != types.ServiceConditionHealthy {
					t.Errorf("compose service %s depends_on %s with condition %q; want %q",
						svc.name, dep, got, types.ServiceConditionHealthy)
				}
			}
			if s.Restart != types.RestartPolicyUnlessStopped {
				t.Errorf("compose service %s restart = %q; want %q", svc.name, s.Restart, types.RestartPolicyUnlessStopped)
			}
			if s.StopGracePeriod == nil {
				t.Errorf("compose service %s has no stop_grace_period", svc.name)
			}
		})
	}
}

// componentFor names the compose component a variable points a service at,
// or "" for none.
func componentFor(name string) string {
	switch {
	case strings.HasSuffix(name, "_DATABASE_URL"):
		return "postgres"
	case strings.HasSuffix(name, "_REDIS_URL"):
		return "redis"
	case name == "AWS_ENDPOINT_URL_SQS":
		return "localstack"
	case strings.HasSuffix(name, "_SMTP_ADDR"):
		return "mailpit"
	}
	return ""
}

// TestCompose_DependsOnWhatTheCodeReads keeps depends_on in step with the
// code as services gain components: a service that reads a database, Redis,
// SQS or SMTP address waits for that component to be healthy.
func TestCompose_DependsOnWhatTheCodeReads(t *testing.T) {
	t.Parallel()
	p := repoProject(t)
	for _, svc := range appServices() {
		t.Run(svc.name, func(t *testing.T) {
			reads, err := envReadsInDir(svc.dir)
			if err != nil {
				t.Fatalf("compose service %s: %v", svc.name, err)
			}
			s, err := p.GetService(svc.name)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range reads {
				dep := componentFor(r.name)
				if dep == "" {
					continue
				}
				if got := s.DependsOn[dep].Condition; got != types.ServiceConditionHealthy {
					t.Errorf("compose service %s reads %s (in %s) but does not depend_on %s with condition %s",
						svc.name, r.name, r.file, dep, types.ServiceConditionHealthy)
				}
			}
		})
	}
}

// TestCompose_HealthyDependenciesHaveHealthchecks catches a depends_on that
// waits for service_healthy on a service that can never become healthy.
func TestCompose_HealthyDependenciesHaveHealthchecks(t *testing.T) {
	t.Parallel()
	p := repoProject(t)
	for name, s := range p.AllServices() {
		for dep, d := range s.DependsOn {
			if d.Condition != types.ServiceConditionHealthy {
				continue
			}
			ds, err := p.GetService(dep)
			if err != nil {
				t.Errorf("compose service %s depends on unknown service %s", name, dep)
				continue
			}
			if ds.HealthCheck == nil || ds.HealthCheck.Disable || len(ds.HealthCheck.Test) == 0 {
				t.Errorf("compose service %s waits for %s to be healthy, but %s has no healthcheck", name, dep, dep)
			}
		}
	}
}

func TestCompose_BindMountsExist(t *testing.T) {
	t.Parallel()
	p := repoProject(t)
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	mounts := 0
	for name, s := range p.AllServices() {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			mounts++
			rel, err := filepath.Rel(root, v.Source)
			if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
				t.Errorf("compose service %s mounts %s, outside the repository", name, v.Source)
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("compose service %s mounts ./%s, which does not exist in the repository", name, rel)
			}
		}
	}
	if mounts == 0 {
		t.Error("found no bind mounts in docker-compose.yml; the loader no longer reports them")
	}
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	content, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatalf("read Dockerfile: %v", err)
	}
	if !regexp.MustCompile(`(?m)^\s*ARG\s+SERVICE(\s|=|$)`).Match(content) {
		t.Error("Dockerfile does not declare ARG SERVICE")
	}

	p := repoProject(t)
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range appServices() {
		t.Run(svc.name, func(t *testing.T) {
			s, err := p.GetService(svc.name)
			if err != nil {
				t.Fatal(err)
			}
			if s.Build == nil {
				t.Fatalf("compose service %s is not built from the repository", svc.name)
			}
			if s.Build.Context != root {
				t.Errorf("compose service %s builds in %s; want the repository root %s", svc.name, s.Build.Context, root)
			}
			if df := s.Build.Dockerfile; df != "" && df != "Dockerfile" {
				t.Errorf("compose service %s builds with %s; want the repository's Dockerfile", svc.name, df)
			}
			arg := s.Build.Args["SERVICE"]
			if arg == nil || *arg == "" {
				t.Fatalf("compose service %s sets no build arg SERVICE", svc.name)
			}
			if got, want := "services/"+*arg, svc.dir; got != want {
				t.Errorf("compose service %s builds %s; want %s", svc.name, got, want)
			}
			if _, err := os.Stat(filepath.Join(repoRoot, "services", *arg, "main.go")); err != nil {
				t.Errorf("compose service %s: build arg SERVICE=%s names no services/%s/main.go", svc.name, *arg, *arg)
			}
		})
	}
}

// prometheusConfig is the part of a Prometheus configuration checked here.
type prometheusConfig struct {
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

func TestPrometheusConfig(t *testing.T) {
	t.Parallel()
	content, err := os.ReadFile(filepath.Join(repoRoot, "deploy/prometheus/prometheus-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg prometheusConfig
	if err := yaml.Unmarshal(content, &cfg); err != nil {
		t.Fatalf("deploy/prometheus/prometheus-compose.yml: %v", err)
	}
	for _, svc := range appServices() {
		t.Run(svc.name, func(t *testing.T) {
			var targets []string
			found := false
			for _, sc := range cfg.ScrapeConfigs {
				if sc.JobName != svc.name {
					continue
				}
				found = true
				if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
					t.Errorf("job %s scrapes %s; want /metrics", svc.name, sc.MetricsPath)
				}
				for _, st := range sc.StaticConfigs {
					targets = append(targets, st.Targets...)
				}
			}
			if !found {
				t.Fatalf("deploy/prometheus/prometheus-compose.yml has no scrape job %s", svc.name)
			}
			want := []string{fmt.Sprintf("%s:%d", svc.name, svc.port)}
			if diff := cmp.Diff(want, targets); diff != "" {
				t.Errorf("job %s targets (-want +got):\n%s", svc.name, diff)
			}
		})
	}
}

// TestGrafanaProvisioning checks that the dashboard provider reads the
// directory compose mounts the dashboards into, and that every dashboard
// there is valid JSON with a title.
func TestGrafanaProvisioning(t *testing.T) {
	t.Parallel()
	const dashboards = "/var/lib/grafana/dashboards"
	content, err := os.ReadFile(filepath.Join(repoRoot, "deploy/grafana/provisioning/dashboards/orderflow.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var provider struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	if err := yaml.Unmarshal(content, &provider); err != nil {
		t.Fatalf("dashboard provider: %v", err)
	}
	if len(provider.Providers) != 1 || provider.Providers[0].Options.Path != dashboards {
		t.Errorf("dashboard provider = %+v; want one provider reading %s", provider.Providers, dashboards)
	}

	p := repoProject(t)
	g, err := p.GetService("grafana")
	if err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"/etc/grafana/provisioning": filepath.Join(root, "deploy/grafana/provisioning"),
		dashboards:                  filepath.Join(root, "deploy/grafana/dashboards"),
	}
	got := map[string]string{}
	for _, v := range g.Volumes {
		if _, ok := want[v.Target]; ok {
			got[v.Target] = v.Source
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("grafana mounts (-want +got):\n%s", diff)
	}

	files, err := filepath.Glob(filepath.Join(repoRoot, "deploy/grafana/dashboards/*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Error("deploy/grafana/dashboards holds no dashboard")
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Title string `json:"title"`
		}
		if err := json.Unmarshal(b, &d); err != nil || d.Title == "" {
			t.Errorf("%s is not a dashboard with a title: %v", file, err)
		}
	}
}
