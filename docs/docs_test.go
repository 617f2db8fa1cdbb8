// Package docs checks Orderflow's documentation against the code, so the
// docs cannot drift: every environment variable a process reads must be in
// the configuration tables of operations.md with its default, every variable
// there must still be read, and every route the services register must be in
// openapi.yaml (and the other way round). What the routes answer is checked
// against openapi.yaml by e2e/openapi_test.go on the running services.
package docs

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/google/go-cmp/cmp"
)

// repoRoot is the repository root as seen from this package's directory.
const repoRoot = ".."

// process is one Orderflow binary: its name in operations.md and its
// source directory.
type process struct {
	name string
	dir  string
}

func processes() []process {
	return []process{
		{"order", "services/order"},
		{"inventory", "services/inventory"},
		{"payment", "services/payment"},
		{"provider", "services/payment/provider"},
		{"notification", "services/notification"},
	}
}

// envVar is one environment variable a process reads. def is its default
// as the code spells it, when the code gives one as a constant expression
// (a literal, or N*time.Unit); kind is the Reader method.
type envVar struct {
	name   string
	kind   string
	def    string
	hasDef bool
	file   string
}

// sharedReaders are the functions of pkg/ that read variables themselves
// through getenv: a call to one (by import path suffix and name) reads
// every getenv("…") literal in the body of the function named third.
func sharedReaders() [][3]string {
	return [][3]string{
		{"/pkg/queue", "ReadConfig", "ReadConfig"},
		{"/pkg/telemetry", "ReadConfig", "ReadConfig"},
		{"/pkg/telemetry", "New", "ReadConfig"}, // New reads through ReadConfig
	}
}

// parseDir parses the non-test Go files of dir (relative to the
// repository root).
func parseDir(fset *token.FileSet, dir string) ([]*ast.File, error) {
	entries, err := os.ReadDir(filepath.Join(repoRoot, dir))
	if err != nil {
		return nil, err
	}
	var files []*ast.File
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(repoRoot, dir, e.Name()), nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}

// funcBody returns the body of the top-level function name in dir.
func funcBody(dir, name string) (*ast.BlockStmt, error) {
	files, err := parseDir(token.NewFileSet(), dir)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil && fd.Name.Name == name {
				return fd.Body, nil
			}
		}
	}
	return nil, fmt.Errorf("%s has no function %s", dir, name)
}

// getenvReads returns the literal arguments of getenv("…") calls in the
// function name of the package in dir.
func getenvReads(dir, name string) ([]string, error) {
	body, err := funcBody(dir, name)
	if err != nil {
		return nil, err
	}
	var vars []string
	ast.Inspect(body, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) != 1 {
			return true
		}
		if id, ok := call.Fun.(*ast.Ident); ok && id.Name == "getenv" {
			if lit, ok := call.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				v, _ := strconv.Unquote(lit.Value)
				vars = append(vars, v)
			}
		}
		return true
	})
	if len(vars) == 0 {
		return nil, fmt.Errorf("found no getenv(\"…\") call in %s.%s: the parser no longer understands it", dir, name)
	}
	return vars, nil
}

// policySuffixes returns the variable suffixes pkg/resilience.ReadPolicy
// reads after its prefix (prefix+"_BREAKER_DELAY"…), with their Reader
// method.
func policySuffixes() ([][2]string, error) {
	body, err := funcBody("pkg/resilience", "ReadPolicy")
	if err != nil {
		return nil, err
	}
	var out [][2]string
	ast.Inspect(body, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) == 0 {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || !isReaderMethod(sel.Sel.Name) {
			return true
		}
		bin, ok := call.Args[0].(*ast.BinaryExpr)
		if !ok || bin.Op != token.ADD {
			return true
		}
		if lit, ok := bin.Y.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			v, _ := strconv.Unquote(lit.Value)
			out = append(out, [2]string{v, sel.Sel.Name})
		}
		return true
	})
	if len(out) == 0 {
		return nil, errors.New("found no prefix+\"_…\" read in resilience.ReadPolicy: the parser no longer understands it")
	}
	return out, nil
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

// constDefault renders a default argument the way operations.md writes it,
// when it is a constant: a literal, true/false, or N*time.Unit.
func constDefault(e ast.Expr) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind == token.STRING {
			s, err := strconv.Unquote(e.Value)
			return s, err == nil
		}
		return strings.ReplaceAll(e.Value, "_", ""), true
	case *ast.Ident:
		if e.Name == "true" || e.Name == "false" {
			return e.Name, true
		}
	case *ast.SelectorExpr:
		if d, ok := timeUnit(e); ok {
			return d.String(), true
		}
	case *ast.BinaryExpr:
		if e.Op != token.MUL {
			return "", false
		}
		lit, ok := e.X.(*ast.BasicLit)
		unit, ok2 := e.Y.(*ast.SelectorExpr)
		if !ok || !ok2 || lit.Kind != token.INT {
			return "", false
		}
		n, err := strconv.Atoi(lit.Value)
		d, ok := timeUnit(unit)
		if err != nil || !ok {
			return "", false
		}
		return (time.Duration(n) * d).String(), true
	}
	return "", false
}

func timeUnit(sel *ast.SelectorExpr) (time.Duration, bool) {
	if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "time" {
		return 0, false
	}
	units := map[string]time.Duration{"Millisecond": time.Millisecond, "Second": time.Second,
		"Minute": time.Minute, "Hour": time.Hour}
	d, ok := units[sel.Sel.Name]
	return d, ok
}

// envReads returns the variables the process in dir reads: the first
// argument of every Reader call on a pkg/env Reader in its non-test files
// (the approach of deploy/deploy_test.go), the variables of the shared
// readers it calls, and the resilience policy variables under the prefix it
// passes to resilience.ReadPolicy.
func envReads(dir string) ([]envVar, error) {
	fset := token.NewFileSet()
	files, err := parseDir(fset, dir)
	if err != nil {
		return nil, err
	}
	suffixes, err := policySuffixes()
	if err != nil {
		return nil, err
	}
	var vars []envVar
	var errs []error
	for _, f := range files {
		filename := fset.Position(f.Pos()).Filename
		imports := map[string]string{}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			name := path[strings.LastIndex(path, "/")+1:]
			if imp.Name != nil {
				name = imp.Name.Name
			}
			imports[name] = path
		}
		pkgFunc := func(e ast.Expr) (string, string) {
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
		readers := map[string]bool{}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.AssignStmt:
				for i, rhs := range n.Rhs {
					if i < len(n.Lhs) && isEnvNew(rhs) {
						if id, ok := n.Lhs[i].(*ast.Ident); ok {
							readers[id.Name] = true
						}
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
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			path, fn := pkgFunc(call)
			for _, sr := range sharedReaders() {
				if strings.HasSuffix(path, sr[0]) && fn == sr[1] {
					names, err := getenvReads(strings.TrimPrefix(sr[0], "/"), sr[2])
					if err != nil {
						errs = append(errs, err)
					}
					for _, name := range names {
						vars = append(vars, envVar{name: name, file: filename})
					}
				}
			}
			if strings.HasSuffix(path, "/pkg/resilience") && fn == "ReadPolicy" && len(call.Args) >= 2 {
				lit, ok := call.Args[1].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					errs = append(errs, fmt.Errorf("%s: resilience.ReadPolicy with a prefix that is not a string literal", fset.Position(call.Pos())))
					return true
				}
				prefix, _ := strconv.Unquote(lit.Value)
				for _, s := range suffixes {
					vars = append(vars, envVar{name: prefix + s[0], kind: s[1], file: filename})
				}
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || !isReaderMethod(sel.Sel.Name) {
				return true
			}
			if id, ok := sel.X.(*ast.Ident); !(ok && readers[id.Name]) && !isEnvNew(sel.X) {
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
			v := envVar{kind: sel.Sel.Name, file: filename}
			v.name, _ = strconv.Unquote(lit.Value)
			if len(call.Args) > 1 {
				v.def, v.hasDef = constDefault(call.Args[1])
			}
			vars = append(vars, v)
			return true
		})
	}
	return vars, errors.Join(errs...)
}

// docRow is one row of a configuration table in operations.md.
type docRow struct {
	readBy []string // processes, from the common table's "read by" column
	def    string
	line   int
}

// configTables parses the "## Configuration" part of operations.md: a
// "### <process>" section per process with | variable | default | meaning |
// rows, and a "### Common" section with | variable | read by | default |
// meaning | rows. It returns section → variable → row.
func configTables(t *testing.T) map[string]map[string]docRow {
	t.Helper()
	b, err := os.ReadFile("operations.md")
	if err != nil {
		t.Fatal(err)
	}
	tables := map[string]map[string]docRow{}
	inConfig, section := false, ""
	for i, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "## "):
			inConfig, section = strings.TrimSpace(strings.TrimPrefix(line, "## ")) == "Configuration", ""
			continue
		case strings.HasPrefix(line, "### "):
			section = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(line, "### ")))
			continue
		}
		if !inConfig || section == "" || !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		for j := range cells {
			cells[j] = strings.TrimSpace(cells[j])
		}
		name, ok := strings.CutPrefix(cells[0], "`")
		if !ok {
			continue // header or separator row
		}
		name = strings.TrimSuffix(name, "`")
		row := docRow{line: i + 1}
		switch {
		case section == "common" && len(cells) >= 4:
			for _, p := range strings.Split(cells[1], ",") {
				row.readBy = append(row.readBy, strings.TrimSpace(p))
			}
			row.def = cells[2]
		case len(cells) >= 3:
			row.def = cells[1]
		default:
			t.Errorf("operations.md:%d: a configuration row needs its default and meaning: %s", i+1, line)
			continue
		}
		if tables[section] == nil {
			tables[section] = map[string]docRow{}
		}
		if _, dup := tables[section][name]; dup {
			t.Errorf("operations.md:%d: %s is listed twice under %q", i+1, name, section)
		}
		tables[section][name] = row
	}
	return tables
}

// docDefault is the default a table cell states: the text between
// backticks, or "" for "(empty)", "—" and the like.
func docDefault(cell string) string {
	if start := strings.Index(cell, "`"); start >= 0 {
		if end := strings.Index(cell[start+1:], "`"); end >= 0 {
			return cell[start+1 : start+1+end]
		}
	}
	return ""
}

// sameDefault compares a default from the code with the one documented,
// by value for numbers, booleans and durations.
func sameDefault(kind, code, doc string) bool {
	switch kind {
	case "Duration":
		d1, err1 := time.ParseDuration(code)
		d2, err2 := time.ParseDuration(doc)
		return err1 == nil && err2 == nil && d1 == d2
	case "Int", "Float":
		f1, err1 := strconv.ParseFloat(code, 64)
		f2, err2 := strconv.ParseFloat(doc, 64)
		return err1 == nil && err2 == nil && f1 == f2
	case "Bool":
		b1, err1 := strconv.ParseBool(code)
		b2, err2 := strconv.ParseBool(doc)
		return err1 == nil && err2 == nil && b1 == b2
	}
	return code == doc
}

// TestOperations_Configuration fails when a process reads a variable
// operations.md does not document under it (or with another default), or
// when operations.md documents a variable no process reads any more.
func TestOperations_Configuration(t *testing.T) {
	tables := configTables(t)
	documentedFor := map[string]map[string]bool{} // section → variable → read by some process
	for section, rows := range tables {
		documentedFor[section] = map[string]bool{}
		for name := range rows {
			documentedFor[section][name] = false
		}
	}
	readBy := map[string]map[string]bool{} // variable → processes reading it
	for _, p := range processes() {
		t.Run(p.name, func(t *testing.T) {
			vars, err := envReads(p.dir)
			if err != nil {
				t.Fatal(err)
			}
			// A parser that finds nothing would make this test pass
			// whatever operations.md says.
			if len(vars) < 4 {
				t.Fatalf("found only %d variables read by %s; the parser no longer understands its config code", len(vars), p.dir)
			}
			seen := map[string]bool{}
			for _, v := range vars {
				if seen[v.name] {
					continue
				}
				seen[v.name] = true
				if readBy[v.name] == nil {
					readBy[v.name] = map[string]bool{}
				}
				readBy[v.name][p.name] = true
				row, ok := tables[p.name][v.name]
				section := p.name
				if !ok {
					row, ok = tables["common"][v.name]
					section = "common"
					if ok && !slices.Contains(row.readBy, p.name) {
						t.Errorf("operations.md:%d: %s is read by %s (%s), but its \"read by\" column does not say %s",
							row.line, v.name, p.name, v.file, p.name)
					}
				}
				if !ok {
					t.Errorf("operations.md documents no %s: %s reads it (%s); add it to the %q table",
						v.name, p.name, v.file, p.name)
					continue
				}
				documentedFor[section][v.name] = true
				if v.hasDef && !sameDefault(v.kind, v.def, docDefault(row.def)) {
					t.Errorf("operations.md:%d: %s defaults to %q in the code (%s), the table says %q",
						row.line, v.name, v.def, v.file, row.def)
				}
			}
			t.Logf("%s reads %d variables", p.name, len(seen))
		})
	}
	for name, row := range tables["common"] {
		for _, p := range row.readBy {
			if !readBy[name][p] {
				t.Errorf("operations.md:%d: %s lists %s as reading it, but %s does not", row.line, name, p, p)
			}
		}
	}
	for section, names := range documentedFor {
		for name, read := range names {
			if !read {
				t.Errorf("operations.md:%d: %s is documented under %q, but no process reads it", tables[section][name].line, name, section)
			}
		}
	}
}

// TestOperations_ConfigurationCanFail proves the check is not vacuous: the
// parser finds the variables of a tiny service, including those of the
// shared readers and of a resilience policy.
func TestOperations_ConfigurationCanFail(t *testing.T) {
	dir := t.TempDir()
	const src = `package main

import (
	"time"

	"github.com/orderflow/orderflow/pkg/env"
	"github.com/orderflow/orderflow/pkg/queue"
	"github.com/orderflow/orderflow/pkg/resilience"
)

func readConfig(getenv func(string) string) {
	r := env.New(getenv)
	_ = r.String("SHOP_ADDR", ":9000")
	_ = r.Duration("SHOP_TTL", 15*time.Minute)
	_ = queue.ReadConfig(getenv)
	_ = resilience.ReadPolicy(r, "SHOP", time.Second)
}
`
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(root, dir)
	if err != nil {
		t.Fatal(err)
	}
	vars, err := envReads(rel)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range vars {
		s := v.name
		if v.hasDef {
			s += "=" + v.def
		}
		got = append(got, s)
	}
	want := []string{"SHOP_ADDR=:9000", "SHOP_TTL=15m0s",
		"AWS_REGION", "AWS_ENDPOINT_URL_SQS", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
		"SHOP_BREAKER_FAILURE_THRESHOLD", "SHOP_BREAKER_WINDOW", "SHOP_BREAKER_DELAY", "SHOP_BREAKER_SUCCESS_THRESHOLD",
		"SHOP_RETRY_MAX", "SHOP_RETRY_BACKOFF", "SHOP_RETRY_MAX_BACKOFF", "SHOP_BULKHEAD"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("envReads (-want +got):\n%s", diff)
	}
	if !sameDefault("Duration", "15m0s", "15m") || sameDefault("Int", "20", "10") {
		t.Error("sameDefault compares durations or numbers wrongly")
	}
}

// codeRoutes returns "METHOD /path" for every route registered in the
// routes.go of the service package in dir: r.Method(http.MethodX, "/p", …)
// and r.Get("/p", …)-style calls.
func codeRoutes(t *testing.T, dir string) []string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, filepath.Join(repoRoot, dir, "routes.go"), nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	var routes []string
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		method, args := "", call.Args
		switch sel.Sel.Name {
		case "Method":
			if len(args) < 2 {
				return true
			}
			m, ok := args[0].(*ast.SelectorExpr)
			if !ok || !strings.HasPrefix(m.Sel.Name, "Method") {
				return true
			}
			method, args = strings.ToUpper(strings.TrimPrefix(m.Sel.Name, "Method")), args[1:]
		case "Get", "Post", "Put", "Patch", "Delete":
			method = strings.ToUpper(sel.Sel.Name)
		default:
			return true
		}
		if len(args) == 0 {
			return true
		}
		lit, ok := args[0].(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		path, _ := strconv.Unquote(lit.Value)
		routes = append(routes, method+" "+path)
		return true
	})
	return routes
}

// TestOpenAPI_Routes fails when openapi.yaml is not a valid OpenAPI 3.1
// document, or when a service registers a route the spec does not document
// (or the spec documents one no service serves).
func TestOpenAPI_Routes(t *testing.T) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("openapi.yaml is not valid: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Errorf("openapi.yaml is OpenAPI %s; want 3.1", doc.OpenAPI)
	}
	ports := map[string]string{"8080": "order", "8081": "inventory", "8082": "payment", "8083": "notification"}
	serviceOf := func(servers openapi3.Servers) []string {
		var names []string
		for _, s := range servers {
			i := strings.LastIndex(s.URL, ":")
			names = append(names, ports[s.URL[i+1:]])
		}
		return names
	}
	spec := map[string][]string{}
	for path, item := range doc.Paths.Map() {
		servers := item.Servers
		if len(servers) == 0 {
			servers = doc.Servers
		}
		for method, op := range item.Operations() {
			for _, svc := range serviceOf(servers) {
				spec[svc] = append(spec[svc], method+" "+path)
			}
			if op.OperationID == "" || len(op.Tags) != 1 {
				t.Errorf("%s %s needs an operationId and one tag", method, path)
			}
			admin := strings.HasPrefix(path, "/admin/") || strings.HasSuffix(path, "/stock")
			if secured := op.Security != nil && len(*op.Security) > 0; secured != admin {
				t.Errorf("%s %s: admin bearer security = %v; want %v", method, path, secured, admin)
			}
		}
	}
	for _, svc := range []string{"order", "inventory", "payment", "notification"} {
		t.Run(svc, func(t *testing.T) {
			// /metrics is served by telemetry.Handler in front of the router.
			code := append(codeRoutes(t, "services/"+svc+"/internal/"+svc), "GET /metrics")
			slices.Sort(code)
			got := spec[svc]
			slices.Sort(got)
			if diff := cmp.Diff(code, got); diff != "" {
				t.Errorf("routes in the code (-) and in openapi.yaml (+) differ:\n%s", diff)
			}
		})
	}
}
