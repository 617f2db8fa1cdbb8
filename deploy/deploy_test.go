// Package deploy checks Orderflow's Docker files against the code. There is
// no Docker engine where the tests run, so docker-compose.yml is parsed with
// compose-go and compared with what each service's main.go reads, and the
// Dockerfile, bind mounts and Prometheus config are checked against the
// repository, as are the identity and access parts (Ory Hydra, its
// clients, the gateway) and the rule that no secret has a default. A
// compose file that drifts from the code then fails `make test` instead of
// failing a user's `docker compose up`.
package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
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

// appServices lists the processes built from this repository: the five the
// brief names and identity, the login and consent app. The provider keeps
// its ledger in Postgres, so it waits for it.
func appServices() []appService {
	return []appService{
		{name: "order", dir: "services/order", port: 8080, needs: []string{"postgres", "localstack"}},
		{name: "inventory", dir: "services/inventory", port: 8081, needs: []string{"postgres"}},
		{name: "payment", dir: "services/payment", port: 8082, needs: []string{"postgres"}},
		{name: "provider", dir: "services/payment/provider", port: 8090, needs: []string{"postgres"}},
		{name: "notification", dir: "services/notification", port: 8083, needs: []string{"postgres", "localstack"}},
		{name: "identity", dir: "services/identity", port: 8084, needs: []string{"postgres", "redis", "hydra"}},
	}
}

// composeSecrets are the variables docker-compose.yml requires with
// ${NAME:?message}: the secrets, which have no default outside make dev.
func composeSecrets() []string {
	return []string{"POSTGRES_PASSWORD", "HYDRA_SECRETS_SYSTEM", "ADMIN_CLIENT_SECRET",
		"ORDER_CLIENT_SECRET", "IDENTITY_CSRF_KEY", "PROVIDER_API_KEY"}
}

// secretSentinel is the value the tests give secret name, so a value in the
// loaded project can be traced back to it.
func secretSentinel(name string) string {
	return "sentinel-" + strings.ToLower(name) + "-0123456789abcdef0123456789abcdef"
}

// secretEnv is the environment the repository's compose file is loaded
// with: each required secret set to its sentinel, nothing else.
func secretEnv() types.Mapping {
	env := types.Mapping{}
	for _, name := range composeSecrets() {
		env[name] = secretSentinel(name)
	}
	return env
}

// loadProject parses a compose file the way `docker compose` does: with the
// loadtest profile and every other one enabled, relative paths resolved
// against workingDir, and a fixed environment env (nil: empty), so
// ${VAR:-default} takes its default whatever the developer's shell exports.
func loadProject(ctx context.Context, workingDir string, content []byte, env types.Mapping) (*types.Project, error) {
	if env == nil {
		env = types.Mapping{}
	}
	details := types.ConfigDetails{
		WorkingDir: workingDir,
		ConfigFiles: []types.ConfigFile{{
			Filename: filepath.Join(workingDir, "docker-compose.yml"),
			Content:  content,
		}},
		Environment: env,
	}
	return loader.LoadWithContext(ctx, details, func(o *loader.Options) {
		o.SetProjectName("orderflow", true)
		o.Profiles = []string{"*"}
	})
}

// repoProject loads the repository's docker-compose.yml with the secrets
// set to their sentinels.
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
	p, err := loadProject(t.Context(), root, content, secretEnv())
	if err != nil {
		t.Fatalf("load docker-compose.yml: %v", err)
	}
	return p
}

func TestCompose_Services(t *testing.T) {
	t.Parallel()
	p := repoProject(t)
	want := []string{"postgres", "redis", "localstack", "mailpit", "jaeger", "prometheus", "grafana",
		"order", "inventory", "payment", "provider", "notification", "identity",
		"hydra-migrate", "hydra", "hydra-clients", "gateway-tls", "gateway", "haproxy"}
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
	// optional: read by a shared config reader but not in its
	// sharedConfigVars list, so a deployment may leave it to the reader's
	// default. Setting it is still setting a variable the code reads.
	optional bool
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

// sharedConfigVars are the variables read by the shared config readers that
// every deployment must set, keyed by the import path suffix of the package
// and the function name. The other variables such a reader reads (found in
// its source by readerLiterals) have defaults that fit everywhere and are
// optional. All four of pkg/auth's are listed: the issuer and the key URL
// differ in every deployment (the defaults are make dev's loopback Hydra),
// and the audience and cache TTL are written out so the compose file and
// the manifests show the whole token rule. TestSharedConfigVars_ReadBySource
// keeps this table true to the code.
func sharedConfigVars() map[[2]string][]string {
	return map[[2]string][]string{
		{"/pkg/queue", "ReadConfig"}:     {"AWS_REGION", "AWS_ENDPOINT_URL_SQS", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"},
		{"/pkg/telemetry", "ReadConfig"}: {"OTEL_EXPORTER_OTLP_ENDPOINT"},
		{"/pkg/auth", "ReadConfig"}:      {"AUTH_ISSUER", "AUTH_JWKS_URL", "AUTH_TOKEN_URL", "AUTH_AUDIENCE", "AUTH_CACHE_TTL"},
	}
}

// readerLiterals returns the variable names a shared config reader reads:
// the string literal arguments of every call of its getenv parameter (a
// parameter of type func(string) string), in the function named fn of the
// package in dir (relative to the repository root) and in the functions of
// that package it calls, transitively.
func readerLiterals(dir, fn string) ([]string, error) {
	fset := token.NewFileSet()
	entries, err := os.ReadDir(filepath.Join(repoRoot, dir))
	if err != nil {
		return nil, err
	}
	funcs := map[string]*ast.FuncDecl{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(repoRoot, dir, e.Name()), nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil {
				funcs[fd.Name.Name] = fd
			}
		}
	}
	isGetenvType := func(e ast.Expr) bool {
		ft, ok := e.(*ast.FuncType)
		if !ok || ft.Params == nil || ft.Results == nil || len(ft.Params.List) != 1 || len(ft.Results.List) != 1 {
			return false
		}
		p, _ := ft.Params.List[0].Type.(*ast.Ident)
		r, _ := ft.Results.List[0].Type.(*ast.Ident)
		return p != nil && r != nil && p.Name == "string" && r.Name == "string" && len(ft.Params.List[0].Names) <= 1
	}
	var names []string
	seen := map[string]bool{}
	var visit func(name string) error
	visit = func(name string) error {
		fd, ok := funcs[name]
		if !ok {
			return fmt.Errorf("%s has no function %s", dir, name)
		}
		if seen[name] {
			return nil
		}
		seen[name] = true
		getenv := map[string]bool{}
		for _, field := range fd.Type.Params.List {
			if isGetenvType(field.Type) {
				for _, n := range field.Names {
					getenv[n.Name] = true
				}
			}
		}
		var errs []error
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			id, ok := call.Fun.(*ast.Ident)
			if !ok {
				return true
			}
			if getenv[id.Name] && len(call.Args) == 1 {
				if lit, ok := call.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if v, err := strconv.Unquote(lit.Value); err == nil && !slices.Contains(names, v) {
						names = append(names, v)
					}
				}
				return true
			}
			if _, local := funcs[id.Name]; local {
				if err := visit(id.Name); err != nil {
					errs = append(errs, err)
				}
			}
			return true
		})
		return errors.Join(errs...)
	}
	if err := visit(fn); err != nil {
		return nil, err
	}
	return names, nil
}

// sharedReaderLiterals caches readerLiterals per shared reader: every
// service's parse asks for the same few.
var sharedReaderLiterals sync.Map // [2]string → func() ([]string, error)

func sharedLiterals(key [2]string) ([]string, error) {
	f, _ := sharedReaderLiterals.LoadOrStore(key, sync.OnceValues(func() ([]string, error) {
		return readerLiterals(strings.TrimPrefix(key[0], "/"), key[1])
	}))
	return f.(func() ([]string, error))()
}

// TestSharedConfigVars_ReadBySource keeps sharedConfigVars honest: every
// variable it says a shared reader reads is read by that reader's code. A
// variable listed before the code reads it would make every deployment set
// a variable nothing uses.
func TestSharedConfigVars_ReadBySource(t *testing.T) {
	t.Parallel()
	for key, vars := range sharedConfigVars() {
		t.Run(key[0]+"."+key[1], func(t *testing.T) {
			read, err := sharedLiterals(key)
			if err != nil {
				t.Fatal(err)
			}
			if len(read) == 0 {
				t.Fatalf("found no getenv calls in %s.%s; the parser no longer understands it", key[0], key[1])
			}
			for _, v := range vars {
				if !slices.Contains(read, v) {
					t.Errorf("sharedConfigVars lists %s for %s.%s, which reads only %v", v, key[0], key[1], read)
				}
			}
		})
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
				all, err := sharedLiterals(key)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %s.%s: %w", fset.Position(call.Pos()), key[0], key[1], err))
				}
				for _, v := range all {
					if !slices.Contains(vars, v) {
						reads = append(reads, envRead{name: v, file: filename, optional: true})
					}
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
// service svc does not set to a value (optional ones aside).
func missingEnv(p *types.Project, svc string, reads []envRead) []string {
	s, err := p.GetService(svc)
	if err != nil {
		return []string{fmt.Sprintf("docker-compose.yml has no service %s", svc)}
	}
	var msgs []string
	seen := map[string]bool{}
	for _, r := range reads {
		if seen[r.name] || r.optional {
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
			// The reverse: a variable the code does not read is a typo or a
			// leftover (ADMIN_TOKEN, gone with the access tokens).
			s, err := p.GetService(svc.name)
			if err != nil {
				t.Fatal(err)
			}
			for name := range s.Environment {
				if !slices.Contains(unique(reads), name) {
					if _, ok := runtimeVars()[name]; !ok {
						t.Errorf("compose service %s sets %s, which %s does not read", svc.name, name, svc.dir)
					}
				}
			}
		})
	}
}

// runtimeVars are variables a process reads without its config code: the Go
// runtime's.
func runtimeVars() map[string]string {
	return map[string]string{"GOMEMLIMIT": "the Go runtime's soft memory limit"}
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
			p, err := loadProject(t.Context(), t.TempDir(), []byte(tt.compose), nil)
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
			// On loopback only: the gateway is the public entry, and the
			// services' own ports stay for this machine's admin calls,
			// docs and load tests.
			published := false
			for _, port := range publisher.Ports {
				if port.Target == svc.port && port.Published == strconv.Itoa(int(svc.port)) && port.HostIP == "127.0.0.1" {
					published = true
				}
			}
			if !published {
				t.Errorf("compose service %s does not publish port 127.0.0.1:%d:%d (ports %+v)", publisher.Name, svc.port, svc.port, publisher.Ports)
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
	case strings.HasSuffix(name, "_HYDRA_ADMIN_URL"):
		return "hydra"
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
	ScrapeConfigs []scrapeConfig `yaml:"scrape_configs"`
}

// scrapeConfig is one scrape job.
type scrapeConfig struct {
	JobName       string `yaml:"job_name"`
	MetricsPath   string `yaml:"metrics_path"`
	StaticConfigs []struct {
		Targets []string `yaml:"targets"`
	} `yaml:"static_configs"`
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
	// Hydra serves its metrics on the admin port only.
	t.Run("hydra", func(t *testing.T) {
		i := slices.IndexFunc(cfg.ScrapeConfigs, func(sc scrapeConfig) bool { return sc.JobName == "hydra" })
		if i < 0 {
			t.Fatal("deploy/prometheus/prometheus-compose.yml has no scrape job hydra")
		}
		sc := cfg.ScrapeConfigs[i]
		if sc.MetricsPath != "/admin/metrics/prometheus" || len(sc.StaticConfigs) != 1 ||
			!slices.Equal(sc.StaticConfigs[0].Targets, []string{"hydra:4445"}) {
			t.Errorf("job hydra scrapes %s on %+v; want /admin/metrics/prometheus on hydra:4445", sc.MetricsPath, sc.StaticConfigs)
		}
	})
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

// TestCompose_PublishedPorts checks that the gateway is the only public
// entry: every other published port is bound to 127.0.0.1, so it is
// reachable from this machine alone.
func TestCompose_PublishedPorts(t *testing.T) {
	t.Parallel()
	p := repoProject(t)
	gatewayPublic := false
	for name, s := range p.AllServices() {
		for _, port := range s.Ports {
			switch {
			case name == "gateway" && port.Target == 8443 && port.Published == "8443":
				gatewayPublic = true
			case port.HostIP != "127.0.0.1":
				t.Errorf("compose service %s publishes %s:%d on %q; only the gateway's 8443 may be public, bind the others to 127.0.0.1",
					name, port.Published, port.Target, port.HostIP)
			}
		}
	}
	if !gatewayPublic {
		t.Error("compose service gateway does not publish 8443:8443")
	}
}

// secretName reports whether a variable name says it holds a secret.
var secretName = regexp.MustCompile(`(^|_)(SECRET|SECRETS|PASSWORD|PASSWD|TOKEN|API_KEY|CSRF_KEY|PRIVATE_KEY)(_|$)`)

// notSecrets are variables whose names look secret but whose values are
// not, with the reason.
func notSecrets() map[string]string {
	return map[string]string{
		"AWS_ACCESS_KEY_ID":     "LocalStack's dummy key: it accepts any",
		"AWS_SECRET_ACCESS_KEY": "LocalStack's dummy key: it accepts any",
		"AUTH_TOKEN_URL":        "the address of Hydra's token endpoint, no secret",
	}
}

// interpolation matches ${NAME}, ${NAME:-default}, ${NAME-default},
// ${NAME:?message}, ${NAME?message}, ${NAME:+alt} and ${NAME+alt}.
var interpolation = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?+])?([^}]*)\}`)

// secretDefaults returns one message for each interpolation of a secret in
// a compose file's text that does not make compose refuse to start without
// it: a default (${X:-dev}), an empty fallback (${X}) or an alternative.
// Comment lines are skipped, and $$ is compose's escaped dollar.
func secretDefaults(content []byte) []string {
	var msgs []string
	for i, line := range strings.Split(string(content), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		line = strings.ReplaceAll(line, "$$", "")
		for _, m := range interpolation.FindAllStringSubmatch(line, -1) {
			name, op := m[1], m[2]
			if !slices.Contains(composeSecrets(), name) && !secretName.MatchString(name) {
				continue
			}
			if _, ok := notSecrets()[name]; ok {
				continue
			}
			if op != ":?" && op != "?" {
				msgs = append(msgs, fmt.Sprintf("line %d: %s does not require %s; write ${%s:?set %s} (no shipped default secret)",
					i+1, m[0], name, name, name))
			}
		}
	}
	return msgs
}

// literalSecrets returns one message for each variable of a loaded project
// that holds a secret not taken from a required variable: a secret-named
// variable whose value holds no sentinel, or a URL whose password is not
// one.
func literalSecrets(p *types.Project) []string {
	fromEnv := func(v string) bool {
		for _, name := range composeSecrets() {
			if strings.Contains(v, secretSentinel(name)) {
				return true
			}
		}
		return false
	}
	var msgs []string
	for name, s := range p.AllServices() {
		for key, v := range s.Environment {
			if v == nil {
				continue
			}
			if _, ok := notSecrets()[key]; !ok && secretName.MatchString(key) && !fromEnv(*v) {
				msgs = append(msgs, fmt.Sprintf("compose service %s sets %s to a literal; take it from a required variable (${NAME:?…})", name, key))
			}
			if u, err := url.Parse(*v); err == nil && u.User != nil {
				if pw, ok := u.User.Password(); ok && !fromEnv(pw) {
					msgs = append(msgs, fmt.Sprintf("compose service %s: %s holds a literal password; take it from a required variable", name, key))
				}
			}
		}
	}
	slices.Sort(msgs)
	return msgs
}

// TestCompose_Secrets checks the rule that no shipped default secret is
// accepted outside make dev: every secret in docker-compose.yml comes from
// a variable compose requires, so it refuses to start without it.
func TestCompose_Secrets(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	content, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range secretDefaults(content) {
		t.Errorf("docker-compose.yml %s", msg)
	}
	for _, msg := range literalSecrets(repoProject(t)) {
		t.Error(msg)
	}
	// Every listed secret is used, so the list (and the .env recipe in the
	// file's header comment) stays true.
	header, _, _ := strings.Cut(string(content), "\nname:")
	for _, name := range composeSecrets() {
		if !strings.Contains(string(content), "${"+name+":?") {
			t.Errorf("docker-compose.yml never requires %s; drop it from composeSecrets or use it", name)
		}
		if !regexp.MustCompile(`(?m)^#.*\b` + name + `\b`).MatchString(header) {
			t.Errorf("the header comment of docker-compose.yml does not show how to set %s", name)
		}
	}
	// Without them, compose refuses to start.
	if _, err := loadProject(t.Context(), root, content, nil); err == nil || !strings.Contains(err.Error(), "required variable") {
		t.Errorf("loading docker-compose.yml without the secrets: error %v; want a required variable error", err)
	}
}

// TestSecretRules proves the secret checks can fail.
func TestSecretRules(t *testing.T) {
	t.Parallel()
	const compose = `
services:
  shop:
    image: shop
    environment:
      ADMIN_CLIENT_SECRET: ${ADMIN_CLIENT_SECRET:-dev-secret}
      ORDER_CLIENT_SECRET: ${ORDER_CLIENT_SECRET}
      SHOP_API_KEY: hunter2hunter2hunter2
      SHOP_DATABASE_URL: postgres://postgres:orderflow@postgres:5432/shop
      SHOP_OTHER_URL: postgres://postgres:${POSTGRES_PASSWORD:?set it}@postgres:5432/shop
      IDENTITY_CSRF_KEY: ${IDENTITY_CSRF_KEY:?set IDENTITY_CSRF_KEY}
      AWS_SECRET_ACCESS_KEY: test
      LOG_LEVEL: ${LOG_LEVEL:-info}
      # A comment: ${PROVIDER_API_KEY:-ignored}
      ESCAPED: $${HYDRA_SECRETS_SYSTEM:-not interpolated}
`
	want := []string{
		"line 6: ${ADMIN_CLIENT_SECRET:-dev-secret} does not require ADMIN_CLIENT_SECRET; write ${ADMIN_CLIENT_SECRET:?set ADMIN_CLIENT_SECRET} (no shipped default secret)",
		"line 7: ${ORDER_CLIENT_SECRET} does not require ORDER_CLIENT_SECRET; write ${ORDER_CLIENT_SECRET:?set ORDER_CLIENT_SECRET} (no shipped default secret)",
	}
	if diff := cmp.Diff(want, secretDefaults([]byte(compose))); diff != "" {
		t.Errorf("secretDefaults (-want +got):\n%s", diff)
	}
	p, err := loadProject(t.Context(), t.TempDir(), []byte(compose), secretEnv())
	if err != nil {
		t.Fatal(err)
	}
	// With the secrets set, the two above resolve to them: only the
	// literals are left.
	want = []string{
		"compose service shop sets SHOP_API_KEY to a literal; take it from a required variable (${NAME:?…})",
		"compose service shop: SHOP_DATABASE_URL holds a literal password; take it from a required variable",
	}
	if diff := cmp.Diff(want, literalSecrets(p)); diff != "" {
		t.Errorf("literalSecrets (-want +got):\n%s", diff)
	}
}

// hydraIssuer returns the issuer compose's Hydra announces.
func hydraIssuer(t *testing.T, p *types.Project) string {
	t.Helper()
	h, err := p.GetService("hydra")
	if err != nil {
		t.Fatal(err)
	}
	v := h.Environment["URLS_SELF_ISSUER"]
	if v == nil || *v == "" {
		t.Fatal("compose service hydra does not set URLS_SELF_ISSUER")
	}
	return *v
}

// env returns a compose service's variable, "" when unset.
func env(s types.ServiceConfig, name string) string {
	if v := s.Environment[name]; v != nil {
		return *v
	}
	return ""
}

// TestCompose_Hydra checks the OpenID Connect provider: migrated in its own
// database before it serves, production mode (no --dev) behind an https
// issuer that the host reaches through the gateway, and the same issuer and
// Hydra's own keys in every service that checks tokens.
func TestCompose_Hydra(t *testing.T) {
	t.Parallel()
	p := repoProject(t)
	const image = "oryd/hydra:v2.3.0"
	h, err := p.GetService("hydra")
	if err != nil {
		t.Fatal(err)
	}
	m, err := p.GetService("hydra-migrate")
	if err != nil {
		t.Fatal(err)
	}
	if h.Image != image || m.Image != image {
		t.Errorf("hydra image %s, hydra-migrate image %s; want %s", h.Image, m.Image, image)
	}
	if diff := cmp.Diff([]string{"migrate", "sql", "up", "-e", "--yes"}, []string(m.Command)); diff != "" {
		t.Errorf("hydra-migrate command (-want +got):\n%s", diff)
	}
	if len(h.Command) < 2 || h.Command[0] != "serve" || h.Command[1] != "all" {
		t.Errorf("hydra command %v; want serve all …", h.Command)
	}
	if slices.Contains(h.Command, "--dev") {
		t.Error("hydra runs with --dev, which turns off its security checks; the https issuer needs none of them off")
	}
	if i := slices.Index(h.Command, "-c"); i < 0 || i+1 >= len(h.Command) || !mountsFile(t, h, h.Command[i+1], "deploy/hydra/hydra.yml") {
		t.Errorf("hydra command %v does not read deploy/hydra/hydra.yml (-c on its mount)", h.Command)
	}
	dsn := env(h, "DSN")
	if u, err := url.Parse(dsn); err != nil || u.Hostname() != "postgres" || u.Path != "/hydra" {
		t.Errorf("hydra DSN %q; want Hydra's own database hydra on postgres", dsn)
	}
	if got := env(m, "DSN"); got != dsn {
		t.Errorf("hydra-migrate DSN %q; want hydra's %q", got, dsn)
	}
	if env(h, "SECRETS_SYSTEM") != secretSentinel("HYDRA_SECRETS_SYSTEM") {
		t.Errorf("hydra SECRETS_SYSTEM is not taken from HYDRA_SECRETS_SYSTEM")
	}
	if m.DependsOn["postgres"].Condition != types.ServiceConditionHealthy ||
		h.DependsOn["hydra-migrate"].Condition != types.ServiceConditionCompletedSuccessfully {
		t.Errorf("hydra-migrate depends_on %v, hydra depends_on %v; want postgres healthy, then hydra-migrate completed successfully",
			m.DependsOn, h.DependsOn)
	}
	for name, want := range map[string]string{"SERVE_PUBLIC_HOST": "0.0.0.0", "SERVE_ADMIN_HOST": "0.0.0.0",
		"SERVE_PUBLIC_PORT": "4444", "SERVE_ADMIN_PORT": "4445"} {
		if got := env(h, name); got != want {
			t.Errorf("hydra %s = %q; want %q", name, got, want)
		}
	}
	if h.HealthCheck == nil || len(h.HealthCheck.Test) == 0 || !strings.Contains(strings.Join(h.HealthCheck.Test, " "), ":4445/health/ready") {
		t.Errorf("hydra healthcheck %+v; want one on the admin port's /health/ready", h.HealthCheck)
	}
	if len(h.Ports) > 0 {
		t.Errorf("hydra publishes %+v; its public port is behind the gateway and its admin port must stay inside", h.Ports)
	}

	// The issuer: https (Hydra's production check), the host's loopback
	// address on the port the gateway publishes, and the login and consent
	// pages behind the same gateway.
	issuer := hydraIssuer(t, p)
	u, err := url.Parse(issuer)
	if err != nil || u.Scheme != "https" || u.Hostname() != "127.0.0.1" || u.Path != "/" {
		t.Fatalf("hydra URLS_SELF_ISSUER %q; want https://127.0.0.1:<gateway port>/", issuer)
	}
	g, err := p.GetService("gateway")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(g.Ports, func(pc types.ServicePortConfig) bool {
		return pc.Published == u.Port() && strconv.Itoa(int(pc.Target)) == u.Port()
	}) {
		t.Errorf("the issuer %s is on port %s, which the gateway does not publish (%+v)", issuer, u.Port(), g.Ports)
	}
	for name, path := range map[string]string{"URLS_LOGIN": "login", "URLS_CONSENT": "consent"} {
		if got := env(h, name); got != issuer+path {
			t.Errorf("hydra %s = %q; want %q (identity behind the gateway)", name, got, issuer+path)
		}
	}

	checked := 0
	for _, svc := range appServices() {
		reads, err := envReadsInDir(svc.dir)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(unique(reads), "AUTH_ISSUER") {
			continue
		}
		checked++
		s, err := p.GetService(svc.name)
		if err != nil {
			t.Fatal(err)
		}
		if got := env(s, "AUTH_ISSUER"); got != issuer {
			t.Errorf("compose service %s AUTH_ISSUER = %q; want Hydra's issuer %q (the tokens' iss)", svc.name, got, issuer)
		}
		if got, want := env(s, "AUTH_JWKS_URL"), "http://hydra:"+env(h, "SERVE_PUBLIC_PORT")+"/.well-known/jwks.json"; got != want {
			t.Errorf("compose service %s AUTH_JWKS_URL = %q; want %q (the issuer's address is the host's loopback)", svc.name, got, want)
		}
	}
	if checked < 4 {
		t.Errorf("found %d services that read AUTH_ISSUER; want order, inventory, payment and notification at least", checked)
	}
}

// mountsFile reports whether compose service s mounts the repository file
// rel (relative to the repository root) at target.
func mountsFile(t *testing.T, s types.ServiceConfig, target, rel string) bool {
	t.Helper()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range s.Volumes {
		if v.Type != types.VolumeTypeBind {
			continue
		}
		if v.Target == target && v.Source == filepath.Join(root, rel) {
			return true
		}
		// A directory mount holding the file.
		if sub, ok := strings.CutPrefix(target, strings.TrimSuffix(v.Target, "/")+"/"); ok && filepath.Join(v.Source, sub) == filepath.Join(root, rel) {
			return true
		}
	}
	return false
}

// TestCompose_HydraClients checks the one-shot that registers the OAuth 2.0
// clients: it runs deploy/hydra/register-clients.sh on every client file
// once Hydra is healthy, with each confidential client's secret from the
// required variables, and the processes that use the clients wait for it.
func TestCompose_HydraClients(t *testing.T) {
	t.Parallel()
	p := repoProject(t)
	c, err := p.GetService("hydra-clients")
	if err != nil {
		t.Fatal(err)
	}
	cmd := append(slices.Clone([]string(c.Entrypoint)), c.Command...)
	script := ""
	for _, arg := range cmd {
		if strings.HasSuffix(arg, "register-clients.sh") {
			script = arg
		}
	}
	if script == "" || !mountsFile(t, c, script, "deploy/hydra/register-clients.sh") {
		t.Errorf("hydra-clients runs %v; want deploy/hydra/register-clients.sh from its mount", cmd)
	}
	if got := env(c, "HYDRA_ADMIN_URL"); got != "http://hydra:"+env(mustService(t, p, "hydra"), "SERVE_ADMIN_PORT") {
		t.Errorf("hydra-clients HYDRA_ADMIN_URL = %q; want Hydra's admin port", got)
	}
	if c.DependsOn["hydra"].Condition != types.ServiceConditionHealthy {
		t.Errorf("hydra-clients depends_on hydra %q; want %q", c.DependsOn["hydra"].Condition, types.ServiceConditionHealthy)
	}
	dir := filepath.Join(filepath.Dir(script), "clients")
	files, err := filepath.Glob(filepath.Join(repoRoot, "deploy/hydra/clients/*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("deploy/hydra/clients holds no client files (%v)", err)
	}
	for _, f := range files {
		id := strings.TrimSuffix(filepath.Base(f), ".json")
		if !mountsFile(t, c, dir+"/"+filepath.Base(f), "deploy/hydra/clients/"+filepath.Base(f)) {
			t.Errorf("hydra-clients does not mount deploy/hydra/clients/%s in %s", filepath.Base(f), dir)
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "${SECRET}") {
			continue
		}
		name := clientSecretVar(id)
		if got := env(c, name); got != secretSentinel(name) {
			t.Errorf("hydra-clients %s = %q; want it from the required variable %s (client %s)", name, got, name, id)
		}
	}

	// order uses orderflow-order with the secret hydra-clients registered.
	o := mustService(t, p, "order")
	var client struct {
		ClientID string `json:"client_id"`
	}
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy/hydra/clients/orderflow-order.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &client); err != nil {
		t.Fatal(err)
	}
	if got := env(o, "ORDER_CLIENT_ID"); got != client.ClientID {
		t.Errorf("order ORDER_CLIENT_ID = %q; want %q", got, client.ClientID)
	}
	if got, want := env(o, "ORDER_CLIENT_SECRET"), env(c, clientSecretVar(client.ClientID)); got != want {
		t.Errorf("order ORDER_CLIENT_SECRET = %q; want the secret hydra-clients registers, %q", got, want)
	}
	for _, name := range []string{"order", "identity"} {
		if got := mustService(t, p, name).DependsOn["hydra-clients"].Condition; got != types.ServiceConditionCompletedSuccessfully {
			t.Errorf("compose service %s depends_on hydra-clients %q; want %q", name, got, types.ServiceConditionCompletedSuccessfully)
		}
	}
	// identity accepts logins at Hydra's admin port.
	if got, want := env(mustService(t, p, "identity"), "IDENTITY_HYDRA_ADMIN_URL"), env(c, "HYDRA_ADMIN_URL"); got != want {
		t.Errorf("identity IDENTITY_HYDRA_ADMIN_URL = %q; want %q", got, want)
	}
	// payment and the provider share the merchant key.
	if got, want := env(mustService(t, p, "payment"), "PAYMENT_PROVIDER_API_KEY"), env(mustService(t, p, "provider"), "PROVIDER_API_KEY"); got != want || got == "" {
		t.Errorf("payment PAYMENT_PROVIDER_API_KEY = %q, provider PROVIDER_API_KEY = %q; want the same key", got, want)
	}
}

// clientSecretVar is the variable register-clients.sh takes client id's
// secret from: orderflow-order → ORDER_CLIENT_SECRET.
func clientSecretVar(id string) string {
	return strings.ReplaceAll(strings.ToUpper(strings.TrimPrefix(id, "orderflow-")), "-", "_") + "_CLIENT_SECRET"
}

// mustService returns compose service name, failing the test without it.
func mustService(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// gatewayVars returns the variables deploy/gateway/haproxy.cfg reads: the
// names of its presetenv lines.
func gatewayVars(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy/gateway/haproxy.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "presetenv" {
			names = append(names, f[1])
		}
	}
	if len(names) < 3 {
		t.Fatalf("found only %v presetenv lines in deploy/gateway/haproxy.cfg; the parser no longer understands it", names)
	}
	return names
}

// TestCompose_Gateway checks the public entry: HAProxy with the repository's
// gateway config, every variable it reads set, each upstream a service and
// port that serves that route (order and inventory through haproxy, which
// balances their replicas; Hydra's public port, never its admin one), the
// certificate from the gateway-tls one-shot, and fixed addresses for the two
// proxies that every service's TRUSTED_PROXIES names exactly.
func TestCompose_Gateway(t *testing.T) {
	t.Parallel()
	p := repoProject(t)
	g := mustService(t, p, "gateway")
	if !mountsFile(t, g, "/usr/local/etc/haproxy/haproxy.cfg", "deploy/gateway/haproxy.cfg") {
		t.Error("gateway does not mount deploy/gateway/haproxy.cfg at /usr/local/etc/haproxy/haproxy.cfg")
	}
	if g.Restart != types.RestartPolicyUnlessStopped {
		t.Errorf("gateway restart = %q; want %q", g.Restart, types.RestartPolicyUnlessStopped)
	}
	for _, name := range gatewayVars(t) {
		if env(g, name) == "" {
			t.Errorf("gateway does not set %s (read by deploy/gateway/haproxy.cfg)", name)
		}
	}
	if _, port, err := net.SplitHostPort(env(g, "GATEWAY_ADDR")); err != nil || port != "8443" {
		t.Errorf("gateway GATEWAY_ADDR = %q; want the published port 8443", env(g, "GATEWAY_ADDR"))
	}

	h := mustService(t, p, "hydra")
	for _, name := range gatewayVars(t) {
		base, ok := strings.CutSuffix(name, "_UPSTREAM")
		if !ok {
			continue
		}
		host, port, err := net.SplitHostPort(env(g, name))
		if err != nil {
			t.Errorf("gateway %s = %q is not host:port", name, env(g, name))
			continue
		}
		target := strings.ToLower(base)
		var wantPort string
		if target == "hydra" {
			wantPort = env(h, "SERVE_PUBLIC_PORT")
		} else {
			i := slices.IndexFunc(appServices(), func(a appService) bool { return a.name == target })
			if i < 0 {
				t.Errorf("gateway %s names no Orderflow process %s", name, target)
				continue
			}
			wantPort = strconv.Itoa(int(appServices()[i].port))
			if s := mustService(t, p, target); s.Deploy != nil && s.Deploy.Replicas != nil && *s.Deploy.Replicas > 1 {
				// One address per replica: haproxy balances them.
				target = "haproxy"
			}
		}
		if host != target || port != wantPort {
			t.Errorf("gateway %s = %s:%s; want %s:%s", name, host, port, target, wantPort)
		}
		if _, err := p.GetService(host); err != nil {
			t.Errorf("gateway %s names %s, which is no compose service", name, host)
		}
	}

	// The certificate comes from the gateway-tls one-shot's volume.
	certDir := filepath.Dir(env(g, "GATEWAY_CERT"))
	tls := mustService(t, p, "gateway-tls")
	volume := ""
	for _, v := range g.Volumes {
		if v.Type == types.VolumeTypeVolume && v.Target == certDir {
			volume = v.Source
		}
	}
	if volume == "" {
		t.Errorf("gateway GATEWAY_CERT=%s is not in a named volume", env(g, "GATEWAY_CERT"))
	} else if !slices.ContainsFunc(tls.Volumes, func(v types.ServiceVolumeConfig) bool {
		return v.Type == types.VolumeTypeVolume && v.Source == volume && !v.ReadOnly
	}) {
		t.Errorf("gateway-tls does not write volume %s, which holds the gateway's certificate", volume)
	}
	if g.DependsOn["gateway-tls"].Condition != types.ServiceConditionCompletedSuccessfully {
		t.Errorf("gateway depends_on gateway-tls %q; want %q", g.DependsOn["gateway-tls"].Condition, types.ServiceConditionCompletedSuccessfully)
	}
	if !slices.ContainsFunc(tls.Volumes, func(v types.ServiceVolumeConfig) bool {
		return v.Type == types.VolumeTypeBind && strings.HasSuffix(v.Source, "/scripts/tls.sh")
	}) {
		t.Error("gateway-tls does not mount scripts/tls.sh, the one way the CA and certificate are made")
	}
	if sans := strings.Fields(strings.ReplaceAll(env(tls, "TLS_SANS"), ",", " ")); !slices.Contains(sans, "DNS:gateway") {
		t.Errorf("gateway-tls TLS_SANS = %q; want DNS:gateway, the name inside the network", env(tls, "TLS_SANS"))
	}

	// TRUSTED_PROXIES: exactly the fixed addresses of the gateway and
	// haproxy, inside the network's subnet and outside the range Docker
	// assigns, so no other container can take them.
	nw, ok := p.Networks["default"]
	if !ok || len(nw.Ipam.Config) != 1 {
		t.Fatalf("the default network has no single ipam config: %+v", nw.Ipam)
	}
	subnet, err1 := netip.ParsePrefix(nw.Ipam.Config[0].Subnet)
	dynamic, err2 := netip.ParsePrefix(nw.Ipam.Config[0].IPRange)
	if err1 != nil || err2 != nil {
		t.Fatalf("network subnet %q / ip_range %q: %v %v", nw.Ipam.Config[0].Subnet, nw.Ipam.Config[0].IPRange, err1, err2)
	}
	var proxies []string
	for _, name := range []string{"gateway", "haproxy"} {
		s := mustService(t, p, name)
		cfg := s.Networks["default"]
		if cfg == nil || cfg.Ipv4Address == "" {
			t.Errorf("compose service %s has no fixed ipv4_address", name)
			continue
		}
		a, err := netip.ParseAddr(cfg.Ipv4Address)
		if err != nil || !subnet.Contains(a) || dynamic.Contains(a) {
			t.Errorf("compose service %s ipv4_address %s; want one in %s outside %s", name, cfg.Ipv4Address, subnet, dynamic)
		}
		proxies = append(proxies, cfg.Ipv4Address)
	}
	slices.Sort(proxies)
	for _, svc := range appServices() {
		reads, err := envReadsInDir(svc.dir)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(unique(reads), "TRUSTED_PROXIES") {
			continue
		}
		var got []string
		for _, f := range strings.Split(env(mustService(t, p, svc.name), "TRUSTED_PROXIES"), ",") {
			got = append(got, strings.TrimSpace(f))
		}
		slices.Sort(got)
		if !slices.Equal(got, proxies) {
			t.Errorf("compose service %s TRUSTED_PROXIES = %v; want exactly the proxies' addresses %v", svc.name, got, proxies)
		}
	}
}

// TestRegisterClientsScript runs deploy/hydra/register-clients.sh, with sh
// and curl, against a stand-in for Hydra's admin API: it creates the
// missing clients, updates the existing one, puts each secret in its
// client, and refuses a missing secret or the placeholder before it
// changes anything.
func TestRegisterClientsScript(t *testing.T) {
	t.Parallel()
	for _, cmd := range []string{"sh", "curl"} {
		if _, err := exec.LookPath(cmd); err != nil {
			t.Fatalf("%s is not installed; install Debian's package: sudo apt-get install %s", cmd, cmd)
		}
	}
	type request struct{ method, path, body string }
	newAdmin := func(t *testing.T) (*httptest.Server, func() []request) {
		var mu sync.Mutex
		var got []request
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			got = append(got, request{r.Method, r.URL.Path, string(b)})
			mu.Unlock()
			switch {
			case r.URL.Path == "/health/ready":
			case r.Method == http.MethodGet && r.URL.Path == "/admin/clients/orderflow-cli":
				io.WriteString(w, `{"client_id":"orderflow-cli"}`)
			case r.Method == http.MethodGet:
				http.Error(w, `{"error":"not_found"}`, http.StatusNotFound)
			case r.Method == http.MethodPost && r.URL.Path == "/admin/clients":
				w.WriteHeader(http.StatusCreated)
			case r.Method == http.MethodPut:
			default:
				http.Error(w, "unexpected", http.StatusTeapot)
			}
		}))
		t.Cleanup(srv.Close)
		return srv, func() []request {
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(got)
		}
	}
	run := func(t *testing.T, url string, vars ...string) (string, error) {
		cmd := exec.CommandContext(t.Context(), "sh", filepath.Join(repoRoot, "deploy/hydra/register-clients.sh"))
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HYDRA_ADMIN_URL=" + url, "HYDRA_WAIT_SECONDS=5"}, vars...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	admin := "ADMIN_CLIENT_SECRET=admin-secret-0123456789abcdef"
	order := "ORDER_CLIENT_SECRET=order-secret-0123456789abcdef"

	t.Run("registers", func(t *testing.T) {
		t.Parallel()
		srv, requests := newAdmin(t)
		if out, err := run(t, srv.URL, admin, order); err != nil {
			t.Fatalf("register-clients.sh: %v\n%s", err, out)
		}
		writes := map[string]map[string]any{}
		for _, r := range requests() {
			if r.method != http.MethodPost && r.method != http.MethodPut {
				continue
			}
			var c map[string]any
			if err := json.Unmarshal([]byte(r.body), &c); err != nil {
				t.Fatalf("%s %s sent invalid JSON: %v\n%s", r.method, r.path, err, r.body)
			}
			writes[r.method+" "+fmt.Sprint(c["client_id"])] = c
		}
		var keys []string
		for k := range writes {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		want := []string{"POST orderflow-admin", "POST orderflow-order", "PUT orderflow-cli"}
		if diff := cmp.Diff(want, keys); diff != "" {
			t.Errorf("writes (-want +got):\n%s", diff)
		}
		if got := writes["POST orderflow-admin"]["client_secret"]; got != "admin-secret-0123456789abcdef" {
			t.Errorf("orderflow-admin client_secret = %v; want ADMIN_CLIENT_SECRET's value", got)
		}
		if got := writes["POST orderflow-order"]["client_secret"]; got != "order-secret-0123456789abcdef" {
			t.Errorf("orderflow-order client_secret = %v; want ORDER_CLIENT_SECRET's value", got)
		}
		if _, ok := writes["PUT orderflow-cli"]["client_secret"]; ok {
			t.Error("orderflow-cli, a public client, was sent a client_secret")
		}
	})

	refusals := []struct {
		name string
		vars []string
		want string
	}{
		{"missing secret", []string{admin}, "ORDER_CLIENT_SECRET is not set"},
		{"placeholder", []string{admin, "ORDER_CLIENT_SECRET=CHANGE_ME"}, "placeholder CHANGE_ME"},
		{"short", []string{admin, "ORDER_CLIENT_SECRET=short"}, "at least 16 characters"},
		{"unsafe character", []string{admin, `ORDER_CLIENT_SECRET=0123456789abcdef"&|`}, "may hold only"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, requests := newAdmin(t)
			out, err := run(t, srv.URL, tt.vars...)
			if err == nil || !strings.Contains(out, tt.want) {
				t.Errorf("register-clients.sh = %v\n%s\nwant a failure saying %q", err, out, tt.want)
			}
			if r := requests(); len(r) > 0 {
				t.Errorf("register-clients.sh called Hydra before refusing: %v", r)
			}
		})
	}
}
