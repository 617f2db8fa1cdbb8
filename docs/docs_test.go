// Package docs checks Orderflow's documentation against the code, so the
// docs cannot drift: every environment variable a process reads must be in
// the configuration tables of operations.md with its default, every variable
// there must still be read, every route the services register must be in
// openapi.yaml (and the other way round) with the security its routes.go
// gives it (anyone, or the scopes of its auth.Require), and every relative
// link in docs/ and README.md must lead to a file, a heading, or the Go
// declaration it names. What the routes answer is checked against
// openapi.yaml by e2e/openapi_test.go on the running services.
package docs

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

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
		{"identity", "services/identity"},
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
		{"/pkg/auth", "ReadConfig", "ReadConfig"},
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
	body, err := funcBody("pkg/resilience", "ReadPolicyFrom")
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
		return nil, errors.New("found no prefix+\"_…\" read in resilience.ReadPolicyFrom: the parser no longer understands it")
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
			if strings.HasSuffix(path, "/pkg/resilience") && (fn == "ReadPolicy" || fn == "ReadPolicyFrom") && len(call.Args) >= 2 {
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

	"github.com/orderflow/orderflow/pkg/auth"
	"github.com/orderflow/orderflow/pkg/env"
	"github.com/orderflow/orderflow/pkg/queue"
	"github.com/orderflow/orderflow/pkg/resilience"
)

func readConfig(getenv func(string) string) {
	r := env.New(getenv)
	_ = r.String("SHOP_ADDR", ":9000")
	_ = r.Duration("SHOP_TTL", 15*time.Minute)
	_ = queue.ReadConfig(getenv)
	_, _ = auth.ReadConfig(getenv)
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
		"AUTH_ISSUER", "AUTH_JWKS_URL", "AUTH_TOKEN_URL", "AUTH_AUDIENCE", "AUTH_CACHE_TTL",
		"SHOP_BREAKER_FAILURE_THRESHOLD", "SHOP_BREAKER_WINDOW", "SHOP_BREAKER_DELAY", "SHOP_BREAKER_SUCCESS_THRESHOLD",
		"SHOP_RETRY_MAX", "SHOP_RETRY_BACKOFF", "SHOP_RETRY_MAX_BACKOFF", "SHOP_BULKHEAD"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("envReads (-want +got):\n%s", diff)
	}
	if !sameDefault("Duration", "15m0s", "15m") || sameDefault("Int", "20", "10") {
		t.Error("sameDefault compares durations or numbers wrongly")
	}
}

// scopeConstants returns the Scope… constants of pkg/auth: Go name →
// scope ("ScopeOrders" → "orders").
func scopeConstants(t *testing.T) map[string]string {
	t.Helper()
	files, err := parseDir(token.NewFileSet(), "pkg/auth")
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]string{}
	for _, f := range files {
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if !strings.HasPrefix(name.Name, "Scope") || i >= len(vs.Values) {
						continue
					}
					if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						consts[name.Name], _ = strconv.Unquote(lit.Value)
					}
				}
			}
		}
	}
	if len(consts) < 4 {
		t.Fatalf("found only %d Scope constants in pkg/auth: the parser no longer understands them", len(consts))
	}
	return consts
}

// codeRoutes returns every route registered in the routes.go of the
// service package in dir ("METHOD /path", from r.Method(http.MethodX,
// "/p", …) and r.Get("/p", …)-style calls) with who may call it: nil for
// anyone, else the sorted scopes of the auth.Require(…) on the router it is
// registered on, followed through variables and .With(…) chains
// (customer := public.With(auth.Require(auth.ScopeOrders))).
func codeRoutes(t *testing.T, dir string) map[string][]string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, filepath.Join(repoRoot, dir, "routes.go"), nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	consts := scopeConstants(t)
	// require returns the scopes of an auth.Require(…) call, or nil.
	require := func(e ast.Expr) []string {
		call, ok := e.(*ast.CallExpr)
		if !ok {
			return nil
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || sel.Sel.Name != "Require" {
			return nil
		}
		if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "auth" {
			return nil
		}
		var scopes []string
		for _, a := range call.Args {
			c, ok := a.(*ast.SelectorExpr)
			v, known := "", false
			if ok {
				v, known = consts[c.Sel.Name]
			}
			if !known {
				t.Fatalf("%s: auth.Require with an argument that is not an auth.Scope… constant", fset.Position(a.Pos()))
			}
			scopes = append(scopes, v)
		}
		slices.Sort(scopes)
		return scopes
	}
	vars := map[string][]string{} // router variable → its scopes
	var scopesOf func(e ast.Expr) []string
	scopesOf = func(e ast.Expr) []string {
		switch e := e.(type) {
		case *ast.Ident:
			return vars[e.Name]
		case *ast.CallExpr:
			sel, ok := e.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "With" {
				return nil
			}
			scopes := scopesOf(sel.X)
			for _, a := range e.Args {
				if s := require(a); s != nil {
					if scopes != nil {
						t.Fatalf("%s: two auth.Require on one route chain; the parser does not know how they combine", fset.Position(a.Pos()))
					}
					scopes = s
				}
			}
			return scopes
		}
		return nil
	}
	routes := map[string][]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		if as, ok := n.(*ast.AssignStmt); ok {
			for i, lhs := range as.Lhs {
				if id, ok := lhs.(*ast.Ident); ok && i < len(as.Rhs) {
					vars[id.Name] = scopesOf(as.Rhs[i])
				}
			}
			return true
		}
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
		routes[method+" "+path] = scopesOf(sel.X)
		return true
	})
	return routes
}

// specAccess returns who may call op according to the spec: nil for an
// operation with `security: []` (anyone), else the sorted scopes its
// requirements name. Each requirement names one scheme and one scope, and
// every scope is offered both as a bearer token and through the oauth2
// flows, so a reader can use either.
func specAccess(op *openapi3.Operation) ([]string, error) {
	if op.Security == nil {
		return nil, errors.New("states no security: give it `security: []` when anyone may call it")
	}
	byScheme := map[string][]string{}
	for _, req := range *op.Security {
		if len(req) != 1 {
			return nil, fmt.Errorf("requirement %v: name exactly one scheme per requirement (alternatives are separate list items)", req)
		}
		for scheme, scopes := range req {
			if len(scopes) != 1 {
				return nil, fmt.Errorf("requirement %v: name exactly one scope", req)
			}
			byScheme[scheme] = append(byScheme[scheme], scopes[0])
		}
	}
	if len(byScheme) == 0 {
		return nil, nil
	}
	for scheme := range byScheme {
		slices.Sort(byScheme[scheme])
	}
	if !slices.Equal(byScheme["bearer"], byScheme["oauth2"]) || len(byScheme) != 2 {
		return nil, fmt.Errorf("bearer scopes %v and oauth2 scopes %v differ (or another scheme is named)", byScheme["bearer"], byScheme["oauth2"])
	}
	return byScheme["bearer"], nil
}

// TestOpenAPI_Routes fails when openapi.yaml is not a valid OpenAPI 3.1
// document, when a service registers a route the spec does not document
// (or the spec documents one no service serves), or when the spec's
// security of an operation is not who routes.go lets call it: anonymous
// routes have `security: []`, the others exactly the scopes of their
// auth.Require, with 401 and 403 responses.
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
	ports := map[string]string{"8080": "order", "8081": "inventory", "8082": "payment", "8083": "notification", "8084": "identity"}
	serviceOf := func(servers openapi3.Servers) []string {
		var names []string
		for _, s := range servers {
			i := strings.LastIndex(s.URL, ":")
			names = append(names, ports[s.URL[i+1:]])
		}
		return names
	}
	type specOp struct {
		access []string
		bad    bool // its security could not be read (already reported)
		op     *openapi3.Operation
	}
	spec := map[string]map[string]specOp{} // service → route → operation
	for path, item := range doc.Paths.Map() {
		servers := item.Servers
		if len(servers) == 0 {
			servers = doc.Servers
		}
		for method, op := range item.Operations() {
			if op.OperationID == "" || len(op.Tags) != 1 {
				t.Errorf("%s %s needs an operationId and one tag", method, path)
			}
			access, err := specAccess(op)
			if err != nil {
				t.Errorf("%s %s: %v", method, path, err)
			}
			for _, svc := range serviceOf(servers) {
				if spec[svc] == nil {
					spec[svc] = map[string]specOp{}
				}
				spec[svc][method+" "+path] = specOp{access: access, bad: err != nil, op: op}
			}
		}
	}
	for _, svc := range []string{"order", "inventory", "payment", "notification", "identity"} {
		t.Run(svc, func(t *testing.T) {
			code := codeRoutes(t, "services/"+svc+"/internal/"+svc)
			codeNames := slices.Sorted(maps.Keys(code))
			specNames := slices.Sorted(maps.Keys(spec[svc]))
			if diff := cmp.Diff(codeNames, specNames); diff != "" {
				t.Errorf("routes in the code (-) and in openapi.yaml (+) differ:\n%s", diff)
			}
			for route, want := range code {
				got, ok := spec[svc][route]
				if !ok {
					continue
				}
				if !got.bad && !slices.Equal(want, got.access) {
					t.Errorf("%s: routes.go lets %s call it, openapi.yaml says %s", route, who(want), who(got.access))
				}
				if want == nil {
					continue
				}
				for _, status := range []int{401, 403} {
					if got.op.Responses.Status(status) == nil {
						t.Errorf("%s needs a token but documents no %d", route, status)
					}
				}
			}
		})
	}
}

// who describes a route's callers for a failure message.
func who(scopes []string) string {
	if scopes == nil {
		return "anyone"
	}
	return "scopes " + strings.Join(scopes, " or ")
}

// markdownLink matches [text](target) in Markdown, not images' "!".
var markdownLink = regexp.MustCompile(`\[([^\]\n]*)\]\(([^)\s]+)\)`)

// codeName matches a link text naming Go code: `Name` or `Type.Method`.
var codeName = regexp.MustCompile("^`([A-Za-z_][A-Za-z0-9_]*)(?:\\.([A-Za-z_][A-Za-z0-9_]*))?`$")

// goDecls returns the top-level names declared in a Go file (functions,
// types, constants, variables) and its methods as "Type.Method".
func goDecls(path string) (map[string]bool, error) {
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if d.Recv == nil || len(d.Recv.List) == 0 {
				names[d.Name.Name] = true
				continue
			}
			typ := d.Recv.List[0].Type
			if star, ok := typ.(*ast.StarExpr); ok {
				typ = star.X
			}
			if idx, ok := typ.(*ast.IndexExpr); ok {
				typ = idx.X
			}
			if id, ok := typ.(*ast.Ident); ok {
				names[id.Name+"."+d.Name.Name] = true
			}
		case *ast.GenDecl:
			for _, spec := range d.Specs {
				switch s := spec.(type) {
				case *ast.TypeSpec:
					names[s.Name.Name] = true
				case *ast.ValueSpec:
					for _, n := range s.Names {
						names[n.Name] = true
					}
				}
			}
		}
	}
	return names, nil
}

// TestDocs_Links fails when a relative link in docs/ or README.md points at
// a file that does not exist, or when a link whose text names Go code
// ([`Verifier.Verify`](../pkg/auth/auth.go)) points at a Go file that does
// not declare it: renaming a function must not leave the docs pointing at
// nothing.
func TestDocs_Links(t *testing.T) {
	files := []string{filepath.Join(repoRoot, "README.md")}
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".md") {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		inFence := false
		for i, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "```") {
				inFence = !inFence
				continue
			}
			if inFence {
				continue
			}
			for _, m := range markdownLink.FindAllStringSubmatch(line, -1) {
				text, target := m[1], m[2]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				target, anchor, _ := strings.Cut(target, "#")
				path := file
				if target != "" {
					path = filepath.Join(filepath.Dir(file), target)
				}
				checked++
				if _, err := os.Stat(path); err != nil {
					t.Errorf("%s:%d: link to %s, which does not exist", file, i+1, m[2])
					continue
				}
				if anchor != "" && strings.HasSuffix(path, ".md") {
					anchors, err := headingAnchors(path)
					if err != nil {
						t.Fatal(err)
					}
					if !anchors[anchor] {
						t.Errorf("%s:%d: link to %s, but %s has no heading with the anchor #%s", file, i+1, m[2], path, anchor)
					}
				}
				cm := codeName.FindStringSubmatch(text)
				if cm == nil || cm[2] == "go" || !strings.HasSuffix(path, ".go") {
					continue // not code, or a file name (`http.go`)
				}
				decls, err := goDecls(path)
				if err != nil {
					t.Errorf("%s:%d: %v", file, i+1, err)
					continue
				}
				name := cm[1]
				if cm[2] != "" {
					name += "." + cm[2]
				}
				// `pkg.Func` may name a package's function, and a bare
				// `Method` a method of the file's one type that has it.
				found := decls[name] || (cm[2] != "" && decls[cm[2]])
				for d := range decls {
					found = found || (cm[2] == "" && strings.HasSuffix(d, "."+name))
				}
				if !found {
					t.Errorf("%s:%d: link text %s, but %s declares no %s", file, i+1, text, m[2], name)
				}
			}
		}
	}
	if checked < 50 {
		t.Errorf("checked only %d links; the parser no longer finds them", checked)
	}
}

// headingAnchors returns the anchors GitHub gives the headings of a
// Markdown file: lower case, punctuation dropped, spaces turned into
// hyphens, "-1", "-2"… added to repeats.
func headingAnchors(path string) (map[string]bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	anchors := map[string]bool{}
	seen := map[string]int{}
	inFence := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inFence = !inFence
			continue
		}
		title, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " ")
		if inFence || !strings.HasPrefix(line, "#") || !ok {
			continue
		}
		var slug strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(title)) {
			switch {
			case r == ' ':
				slug.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				slug.WriteRune(r)
			}
		}
		a := slug.String()
		if n := seen[a]; n > 0 {
			anchors[fmt.Sprintf("%s-%d", a, n)] = true
		} else {
			anchors[a] = true
		}
		seen[a]++
	}
	return anchors, nil
}
