package webtest

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// gen makes the requests of one run.
type gen struct {
	rng    *rand.Rand
	seed   uint64
	n      int
	tokens []string
}

func (g *gen) intn(n int) int        { return g.rng.IntN(n) }
func (g *gen) chance(p float64) bool { return g.rng.Float64() < p }

func pick[T any](g *gen, xs []T) T { return xs[g.intn(len(xs))] }

func (g *gen) uuid() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], g.rng.Uint64())
	binary.BigEndian.PutUint64(b[8:], g.rng.Uint64())
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// text returns n random letters and digits.
func (g *gen) text(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[g.intn(len(alphabet))]
	}
	return string(b)
}

// fill replaces the placeholders of a valid value.
func (g *gen) fill(s string) string {
	for strings.Contains(s, "$uuid") {
		s = strings.Replace(s, "$uuid", g.uuid(), 1)
	}
	for strings.Contains(s, "$unique") {
		g.n++
		s = strings.Replace(s, "$unique", fmt.Sprintf("h%x-%d", g.seed&0xffffff, g.n), 1)
	}
	return s
}

// part is the part of a request a mutation changes.
type part int

const (
	partParam  part = iota // a path parameter
	partQuery              // a query parameter, or the query as a whole (name "")
	partHeader             // a header
	partJSON               // one value of the JSON body, by slot
	partForm               // a form field, or the form as a whole (name "")
	partBody               // the body as a whole
)

// mutation is one change of a valid call: the part and the name or JSON
// slot it changes, and the class of hostile value it puts there. Each
// request draws a new member of the class.
type mutation struct {
	part  part
	name  string
	slot  int
	class string
	label string // where, for a failure: "query customer_id", "body items[0].sku"
}

func (m mutation) String() string { return m.label + ": " + m.class }

// Classes of hostile values for a string: each is a way in which a value
// can be wrong.
var stringClasses = []string{
	"nul", "utf8", "control", "long", "huge", "blank", "unicode", "syntax", "number", "uuid",
}

// classValue returns a member of class, derived from the valid value v
// where it can be.
func (g *gen) classValue(class, v string) string {
	var xs []string
	switch class {
	case "nul":
		xs = []string{v + "\x00", "\x00" + v, "a\x00b", "\x00", strings.ReplaceAll(v+"_", "_", "\x00")}
	case "utf8":
		xs = []string{v + "\xff", "\xff" + v, "\xc3\x28", "\xed\xa0\x80", "\xc0\x80", "\xf4\x90\x80\x80",
			strings.Repeat("\xff", 100), "\xfe\xff" + v}
	case "control":
		xs = []string{v + "\x01", "\x1b[2J" + v, v + "\r\n", v + "\r\nX-Injected: 1", v + "\x7f", v + "\u0085",
			v + "\u2028", "\t" + v, v + "\n", "\x08"}
	case "long":
		xs = []string{strings.Repeat("a", 255), strings.Repeat("a", 256), strings.Repeat("é", 256),
			strings.Repeat(v+"x", 1+4096/(len(v)+1)), strings.Repeat("😀", 1100)}
	case "huge":
		// Repeats compress well; Postgres indexes compressed values, so
		// only random text finds an index's row size limit.
		xs = []string{strings.Repeat("a", 60000), strings.Repeat(v+"-", 1+60000/(len(v)+1))[:60000],
			g.text(3000), g.text(10000), g.text(60000)}
	case "blank":
		xs = []string{"", " ", " " + v, v + " ", "\u00a0" + v, "\u200b"}
	case "unicode":
		xs = []string{strings.ToUpper(v), strings.ToLower(v), v + "\u0301", "İ", "ﬃ", "😀", "\u202e" + v,
			"\ufeff" + v, v + "\ufffd", strings.Repeat("\u0301", 300)}
	case "syntax":
		xs = []string{"'", v + "'", "%", v + "%", "_", "%_%", "\\", `"`, "../..", "/", v + "/..", "?", "#", "&",
			"=", ";", "' OR '1'='1", "'; DROP TABLE x; --", "null", "true", "[]", "{}", "<script>", "${jndi:x}",
			"*", "-" + v, "+" + v}
	case "number":
		xs = append(slices.Clone(numbers), badNumbers...)
	case "uuid":
		xs = uuidSpellings(v)
	}
	if len(xs) == 0 {
		return v
	}
	return pick(g, xs)
}

// uuidSpellings are UUIDs in every form but the one canonical one, and
// UUIDs at the edges; for a valid UUID v, they are v's own spellings.
func uuidSpellings(v string) []string {
	if !looksLikeUUID(v) {
		v = "01a23d1d-7424-758b-8d93-b1a2ef45eeaa"
	}
	return []string{"{" + v + "}", "urn:uuid:" + v, strings.ReplaceAll(v, "-", ""), strings.ToUpper(v),
		"URN:UUID:" + strings.ToUpper(v), v[:35], v + "0", "(" + v + ")", strings.Replace(v, "-", "", 1),
		"00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff", v[:8] + "-" + v[9:],
		"g" + v[1:], strings.Replace(v, "-", "\x00", 1), " " + v, v + "\x00", "{" + strings.ToUpper(v) + "}",
		v[:8] + v[9:13] + "-" + v[14:]}
}

func looksLikeUUID(s string) bool {
	return len(s) == 36 && s[8] == '-' && s[13] == '-' && s[18] == '-' && s[23] == '-'
}

// numbers are integer and float spellings at and past the int32, int64
// and float64 edges.
var numbers = []string{
	"0", "-0", "1", "-1", "1000", "1001", "2147483647", "2147483648", "-2147483649", "4294967296",
	"9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
	"18446744073709551616", "100000000000000000000000000000", "1e308", "1.7976931348623157e308", "1e309",
	"-1e309", "5e-324", "1e-400", "0.1", "1.0", "1e2", "1E3", "1.5", "-0.0",
}

// badNumbers are not JSON numbers.
var badNumbers = []string{"01", "+1", ".5", "1.", "NaN", "Infinity", "-Infinity", "0x10", "1_000", "1e", "--1"}

// headerValues are the hostile values of the headers every route gets,
// besides the string classes.
func (g *gen) headerValues(name string, route Route) []string {
	switch name {
	case "Authorization":
		tok := "x"
		if len(route.Tokens) > 0 {
			tok = pick(g, route.Tokens)
		}
		return []string{"Bearer", "Bearer ", "bearer " + tok, "Bearer  " + tok, "Bearer " + tok + " x",
			"Bearer " + tok + "\xff", "Basic dXNlcjpwYXNzd29yZA==", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJjdXNfMSJ9.",
			"Bearer a.b.c", "Bearer " + strings.Repeat("A", 8000), "\xff\xfe", "Bearer " + strings.ToUpper(tok),
			tok, "Bearer " + tok + "," + tok}
	case "If-None-Match":
		return []string{"*", `W/"x"`, `""`, `"`, `W/`, `"` + "\xff" + `"`, `"a", "b", *`, strings.Repeat(`"x", `, 1500),
			`W/"` + strings.Repeat("a", 5000) + `"`, `*, "x"`, `,,,`, `"x" "y"`}
	case "Content-Type":
		return []string{"text/plain", "application/json; charset=utf-16", "application/json;", "application/",
			"application/json; charset=\xff", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded",
			"application/problem+json", "application/json, text/html", ";;;", "\xff", "application/json; a=\"",
			"APPLICATION/JSON", "application/json; charset=latin1", "*/*", "application/jsonx"}
	case "X-Forwarded-For":
		return []string{"203.0.113.9", "::1", "203.0.113.9, 198.51.100.7", "garbage", "999.999.999.999",
			"[::1]:80", strings.Repeat("203.0.113.9, ", 600), "unknown", "::ffff:192.0.2.1", "192.0.2.1, 192.0.2.2",
			"fe80::1%eth0", ",", "1.2.3.4:80"}
	case "Accept-Encoding":
		return []string{"gzip", "gzip;q=0", "br, *;q=0", "identity;q=0", ",,,,", "gzip;q=\xff", "GZIP", "*"}
	case "Cookie":
		return []string{"identity_browser=\xff", "identity_browser=" + strings.Repeat("a", 5000), "a=b; a=c",
			"=;=;", "identity_browser=", `identity_browser="x"`, "identity_browser=a; identity_browser=b"}
	case "X-Request-Id":
		return []string{strings.Repeat("r", 65), strings.Repeat("r", 8000), "a b", "\xff", "-", "00000000-0000-0000-0000-000000000000"}
	}
	return nil
}

// hostileHeaders are the request headers every route gets hostile values
// in; a route's own headers are added to them.
var hostileHeaders = []string{
	"Accept-Encoding", "Authorization", "Content-Type", "Cookie", "Idempotency-Key", "If-None-Match",
	"X-Forwarded-For", "X-Request-Id",
}

// mutations lists every mutation of route: each path parameter, query
// parameter, header, form field and JSON value with each class of hostile
// value that fits it, and the body and query as a whole.
func (g *gen) mutations(route Route) []mutation {
	var out []mutation
	label := ""
	add := func(p part, name string, slot int, classes ...string) {
		for _, c := range classes {
			out = append(out, mutation{part: p, name: name, slot: slot, class: c, label: label})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(route.Params)) {
		label = "path {" + name + "}"
		add(partParam, name, 0, stringClasses...)
		add(partParam, name, 0, "escape")
	}
	for _, name := range slices.Sorted(maps.Keys(route.Query)) {
		label = "query " + name
		add(partQuery, name, 0, stringClasses...)
		add(partQuery, name, 0, "del", "dup")
	}
	label = "query"
	add(partQuery, "", 0, "unknown", "tail")

	headers := slices.Clone(hostileHeaders)
	for k := range route.Header {
		if k = http.CanonicalHeaderKey(k); !slices.Contains(headers, k) {
			headers = append(headers, k)
		}
	}
	slices.Sort(headers)
	for _, name := range headers {
		label = "header " + name
		if name == "Authorization" {
			add(partHeader, name, 0, "special", "del", "dup")
			continue
		}
		add(partHeader, name, 0, stringClasses...)
		add(partHeader, name, 0, "del", "dup")
		if g.headerValues(name, route) != nil {
			add(partHeader, name, 0, "special", "special", "special")
		}
	}

	switch c := g.template(route); {
	case route.Form:
		for _, p := range c.form {
			label = "form " + p.k
			add(partForm, p.k, 0, stringClasses...)
			add(partForm, p.k, 0, "del", "dup")
		}
		label = "form"
		add(partForm, "", 0, "unknown")
		label = "body"
		add(partBody, "", 0, formBodies...)
	case c.tree != nil:
		for i, s := range slots(c.tree) {
			if i == 0 {
				continue // the root: the whole-body classes
			}
			label = "body " + s.path
			switch (*s.ptr).(type) {
			case str:
				add(partJSON, "", i, stringClasses...)
				add(partJSON, "", i, "escape", "type", "nest")
			case raw:
				add(partJSON, "", i, "jnumber", "jnumber", "badnumber", "quoted", "type", "nest")
			case object:
				add(partJSON, "", i, "unknown", "type")
			case array:
				add(partJSON, "", i, "empty", "many", "many", "append", "type", "nest")
			}
			if s.parent != nil {
				add(partJSON, "", i, "del", "dup")
			}
		}
		label = "body"
		add(partJSON, "", 0, "unknown")
		add(partBody, "", 0, jsonBodies...)
	case route.Body != "" || route.Method != http.MethodGet:
		label = "body"
		add(partBody, "", 0, jsonBodies...)
	}
	return out
}

// pair is one query or form parameter; order and repeats are kept.
type pair struct{ k, v string }

// call is a request being built.
type call struct {
	params map[string]string
	raw    map[string]bool // params already escaped
	query  []pair
	qtail  string // appended to the query as it is
	header http.Header
	body   []byte
	tree   *node // the JSON body, while it is still one
	form   []pair
	isForm bool
}

// template returns the valid call of route, placeholders filled.
func (g *gen) template(route Route) *call {
	c := &call{params: map[string]string{}, raw: map[string]bool{}, header: http.Header{}, isForm: route.Form}
	for k, v := range route.Params {
		c.params[k] = g.fill(v)
	}
	for _, k := range slices.Sorted(maps.Keys(route.Query)) {
		c.query = append(c.query, pair{k, g.fill(route.Query[k])})
	}
	for _, k := range slices.Sorted(maps.Keys(route.Header)) {
		c.header.Set(k, g.fill(route.Header[k]))
	}
	body := g.fill(route.Body)
	if route.Body != "" && c.header.Get("Content-Type") == "" {
		if route.Form {
			c.header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			c.header.Set("Content-Type", "application/json")
		}
	}
	switch {
	case route.Form:
		vals, _ := url.ParseQuery(body)
		for _, k := range slices.Sorted(maps.Keys(vals)) {
			for _, v := range vals[k] {
				c.form = append(c.form, pair{k, v})
			}
		}
	case body != "":
		var v any
		dec := json.NewDecoder(strings.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&v); err == nil {
			n := toNode(v)
			c.tree = &n
		} else {
			c.body = []byte(body) // not JSON: sent as it is, or replaced whole
		}
	}
	return c
}

// request builds the valid call of route, applies muts and returns the
// request and its dump. Without anyCaller the call carries a token the
// route accepts (none for an anonymous route); with it, the caller is
// drawn: mostly such a token, sometimes none or another caller's.
func (g *gen) request(route Route, muts []mutation, anyCaller bool) (*http.Request, string) {
	c := g.template(route)
	x := g.rng.Float64()
	switch {
	case !anyCaller && len(route.Tokens) > 0, len(route.Tokens) > 0 && x < 0.8:
		c.header.Set("Authorization", "Bearer "+pick(g, route.Tokens))
	case anyCaller && len(g.tokens) > 0 && x < 0.9:
		c.header.Set("Authorization", "Bearer "+pick(g, g.tokens))
	}
	for _, m := range muts {
		g.apply(c, route, m)
	}
	return c.build(route)
}

// apply makes one mutation of c.
func (g *gen) apply(c *call, route Route, m mutation) {
	switch m.part {
	case partParam:
		if m.class == "escape" {
			// Escapes a client may send as they are: an encoded slash,
			// dot segments, double encoding, an overlong NUL.
			c.params[m.name] = pick(g, []string{"%2F", "a%2Fb", "%2e%2e", "%2e%2e%2f%2e%2e", "%252F", "%C0%80",
				"%00", "%FF", "%25", ".", "..", c.params[m.name] + "%2F"})
			c.raw[m.name] = true
			return
		}
		c.params[m.name] = g.classValue(m.class, c.params[m.name])
	case partQuery:
		g.applyPairs(&c.query, m)
		if m.name == "" && m.class == "tail" {
			c.qtail = pick(g, []string{"%zz", "a=%", "=", "&&&", ";", "a=1;b=2", "%FF=%FF", "%00=%00", "+", "%"})
		}
	case partHeader:
		switch m.class {
		case "del":
			c.header.Del(m.name)
		case "dup":
			v := c.header.Get(m.name)
			c.header.Add(m.name, headerValue(g.classValue(pick(g, stringClasses), v)))
		case "special":
			c.header.Set(m.name, headerValue(pick(g, g.headerValues(m.name, route))))
		default:
			c.header.Set(m.name, headerValue(g.classValue(m.class, c.header.Get(m.name))))
		}
	case partForm:
		g.applyPairs(&c.form, m)
	case partJSON:
		if c.tree != nil {
			g.applyJSON(c.tree, m)
		}
	case partBody:
		c.tree, c.isForm = nil, false
		c.body = g.wholeBody(m.class, c)
	}
}

// applyPairs mutates the query or form parameter m names, or adds an
// unknown one when m names none.
func (g *gen) applyPairs(ps *[]pair, m mutation) {
	if m.name == "" {
		if m.class == "unknown" {
			*ps = append(*ps, pair{g.classValue(pick(g, stringClasses), "x"), g.classValue(pick(g, stringClasses), "1")})
		}
		return
	}
	i := slices.IndexFunc(*ps, func(p pair) bool { return p.k == m.name })
	if i < 0 {
		return
	}
	switch m.class {
	case "del":
		*ps = slices.Delete(*ps, i, i+1)
	case "dup":
		dup := pair{m.name, g.classValue(pick(g, stringClasses), (*ps)[i].v)}
		if g.chance(0.5) {
			*ps = slices.Insert(*ps, i, dup)
		} else {
			*ps = append(*ps, dup)
		}
	default:
		(*ps)[i].v = g.classValue(m.class, (*ps)[i].v)
	}
}

// headerValue makes v a value a Go HTTP server would pass to its handler:
// control characters other than tab are refused before (400), leading and
// trailing blanks trimmed, and the header block is at most 16 KiB. Bytes of
// invalid UTF-8 (obs-text) are passed on.
func headerValue(v string) string {
	if !httpguts.ValidHeaderFieldValue(v) {
		v = strings.Map(func(r rune) rune {
			if r < 0x20 && r != '\t' || r == 0x7f {
				return -1
			}
			return r
		}, v)
	}
	if len(v) > 8<<10 {
		v = v[:8<<10]
	}
	return strings.Trim(v, " \t")
}

// jsonBodies and formBodies name the ways a body can be broken as a whole.
var (
	jsonBodies = []string{"empty", "scalar", "open", "truncated", "trailing", "bom", "utf16bom", "over64k",
		"longstring", "deeparray", "deepobject", "utf16", "nul", "twice", "upper", "garbage"}
	formBodies = []string{"badescape", "partial", "notutf8", "semicolon", "manyfields", "over64k", "json", "nul"}
)

// wholeBody returns the body of class, made from the valid one of c.
func (g *gen) wholeBody(class string, c *call) []byte {
	var v string
	switch {
	case c.tree != nil:
		var b bytes.Buffer
		writeNode(&b, *c.tree)
		v = b.String()
	default:
		v = string(c.body)
	}
	if v == "" {
		v = `{"a":1}`
	}
	switch class {
	case "empty":
		return nil
	case "scalar":
		return []byte(pick(g, []string{"null", "[]", "{}", `""`, "0", "true", "[{}]", `{"":""}`, "1e309"}))
	case "open":
		return []byte(pick(g, []string{"{", "[", `{"`, `{"a"`, `{"a":`}))
	case "truncated":
		return []byte(v[:g.intn(len(v))])
	case "trailing":
		return []byte(v + pick(g, []string{"{}", " x", "\x00", "\xff", "]", ",", "null", "\n\n{}"}))
	case "bom":
		return []byte("\ufeff" + v)
	case "utf16bom":
		return []byte("\xff\xfe" + v)
	case "over64k":
		return []byte(v + strings.Repeat(" ", 65<<10)) // past the 64 KiB limit
	case "longstring":
		return []byte(`{"a":"` + strings.Repeat("a", 70<<10) + `"}`)
	case "deeparray":
		d := pick(g, []int{100, 10001, 30000})
		return []byte(strings.Repeat("[", d) + strings.Repeat("]", d))
	case "deepobject":
		d := pick(g, []int{100, 10001})
		return []byte(strings.Repeat(`{"a":`, d) + "1" + strings.Repeat("}", d))
	case "utf16":
		var b []byte
		for _, r := range v {
			b = append(b, byte(r), byte(r>>8))
		}
		return b
	case "nul":
		return []byte(strings.ReplaceAll(v, ":", ":\x00"))
	case "twice":
		return []byte(v + v)
	case "upper":
		return []byte(strings.ToUpper(v))
	case "badescape":
		return []byte(pick(g, []string{"%zz=1", "a=%", "a=%F", "%=%"}))
	case "partial":
		return []byte(pick(g, []string{"a", "=", "&", "&&=&="}))
	case "notutf8":
		return []byte("\xff=\xff&" + v)
	case "semicolon":
		return []byte(strings.ReplaceAll(v, "&", ";"))
	case "manyfields":
		return []byte(strings.Repeat("a=b&", 15<<10))
	case "json":
		return []byte(`{"a":1}`)
	default: // garbage
		return []byte(g.classValue(pick(g, stringClasses), v))
	}
}

// build returns the request and its dump.
func (c *call) build(route Route) (*http.Request, string) {
	var path strings.Builder
	for i, seg := range strings.Split(route.Pattern, "/") {
		if i > 0 {
			path.WriteByte('/')
		}
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			name, _, _ := strings.Cut(seg[1:len(seg)-1], ":")
			if c.raw[name] {
				path.WriteString(c.params[name])
			} else {
				path.WriteString(url.PathEscape(c.params[name]))
			}
			continue
		}
		path.WriteString(seg)
	}
	var q []string
	for _, p := range c.query {
		q = append(q, url.QueryEscape(p.k)+"="+url.QueryEscape(p.v))
	}
	if c.qtail != "" {
		q = append(q, c.qtail)
	}
	target := path.String()
	if len(q) > 0 {
		target += "?" + strings.Join(q, "&")
	}
	if len(target) > 12<<10 {
		// A Go server refuses a request line this long (431) before any
		// handler runs. Cut before an escape that would be split.
		target = target[:12<<10]
		if i := strings.LastIndexByte(target, '%'); i >= len(target)-2 {
			target = target[:i]
		}
	}
	body := c.body
	switch {
	case c.isForm:
		var f []string
		for _, p := range c.form {
			f = append(f, url.QueryEscape(p.k)+"="+url.QueryEscape(p.v))
		}
		body = []byte(strings.Join(f, "&"))
	case c.tree != nil:
		var b bytes.Buffer
		writeNode(&b, *c.tree)
		body = b.Bytes()
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		// Not a request line a server would pass on; send the pattern.
		u = &url.URL{Path: route.Pattern}
	}
	req := httptest.NewRequest(route.Method, "/", bytes.NewReader(body))
	req.URL = u
	req.RequestURI = u.RequestURI()
	req.Header = c.header
	req.ContentLength = int64(len(body))

	var dump strings.Builder
	fmt.Fprintf(&dump, "%s %s\n", route.Method, clip(req.RequestURI, 1500))
	for _, k := range slices.Sorted(maps.Keys(c.header)) {
		for _, v := range c.header[k] {
			fmt.Fprintf(&dump, "%s: %s\n", k, clip(strconv.Quote(v), 300))
		}
	}
	fmt.Fprintf(&dump, "\n%s", clip(strconv.Quote(string(body)), 1500))
	return req, dump.String()
}

// node is a JSON value whose spelling is kept: members in order and
// repeated keys, numbers as written, strings with invalid UTF-8 as it is.
type node any

type (
	object []member
	array  []node
	raw    string // written as it is
	str    string
)

type member struct {
	k string
	v node
}

func toNode(v any) node {
	switch v := v.(type) {
	case map[string]any:
		var o object
		for _, k := range slices.Sorted(maps.Keys(v)) {
			o = append(o, member{k, toNode(v[k])})
		}
		return o
	case []any:
		a := array{}
		for _, e := range v {
			a = append(a, toNode(e))
		}
		return a
	case string:
		return str(v)
	case json.Number:
		return raw(v.String())
	case bool:
		return raw(strconv.FormatBool(v))
	default:
		return raw("null")
	}
}

func writeNode(b *bytes.Buffer, n node) {
	switch n := n.(type) {
	case object:
		b.WriteByte('{')
		for i, m := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(b, m.k)
			b.WriteByte(':')
			writeNode(b, m.v)
		}
		b.WriteByte('}')
	case array:
		b.WriteByte('[')
		for i, e := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			writeNode(b, e)
		}
		b.WriteByte(']')
	case str:
		writeString(b, string(n))
	case raw:
		b.WriteString(string(n))
	}
}

// writeString quotes s as JSON does, except that bytes of invalid UTF-8 are
// written as they are: the decoder under test has to cope with them.
func writeString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20:
			fmt.Fprintf(b, `\u%04x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}

// slot is one value in a JSON tree and where it sits: parent is the object
// or array holding it (nil for the root), at index.
type slot struct {
	ptr    *node
	parent *node
	index  int
	path   string // "items[0].sku"
}

// slots returns every value of the tree under n, n first, depth first.
func slots(n *node) []slot {
	out := []slot{{ptr: n, path: "(body)"}}
	var walk func(n *node, path string)
	walk = func(n *node, path string) {
		switch v := (*n).(type) {
		case object:
			for i := range v {
				p := strings.TrimPrefix(path+"."+v[i].k, ".")
				out = append(out, slot{ptr: &v[i].v, parent: n, index: i, path: p})
				walk(&v[i].v, p)
			}
		case array:
			for i := range v {
				p := fmt.Sprintf("%s[%d]", path, i)
				out = append(out, slot{ptr: &v[i], parent: n, index: i, path: p})
				walk(&v[i], p)
			}
		}
	}
	walk(n, "")
	return out
}

// applyJSON makes mutation m of the JSON tree under root.
func (g *gen) applyJSON(root *node, m mutation) {
	all := slots(root)
	if m.slot >= len(all) {
		return // an earlier mutation of this request removed it
	}
	s := all[m.slot]
	switch m.class {
	case "del":
		switch p := (*s.parent).(type) {
		case object:
			*s.parent = slices.Delete(slices.Clone(p), s.index, s.index+1)
		case array:
			*s.parent = slices.Delete(slices.Clone(p), s.index, s.index+1)
		}
		return
	case "dup": // a repeated key (or element), the hostile one first or last
		switch p := (*s.parent).(type) {
		case object:
			dup := member{p[s.index].k, g.jsonValue(p[s.index].v)}
			o := slices.Clone(p)
			if g.chance(0.5) {
				o = slices.Insert(o, s.index, dup)
			} else {
				o = append(o, dup)
			}
			*s.parent = o
		case array:
			*s.parent = slices.Insert(slices.Clone(p), s.index, p[s.index])
		}
		return
	case "unknown":
		if o, ok := (*s.ptr).(object); ok {
			*s.ptr = append(slices.Clone(o), member{g.classValue(pick(g, stringClasses), "extra"), g.jsonValue(nil)})
		}
		return
	case "empty":
		*s.ptr = array{}
		return
	case "many": // at and past the usual item limits
		if a, ok := (*s.ptr).(array); ok && len(a) > 0 {
			n := pick(g, []int{50, 51, 100, 101, 1000, 2000})
			out := make(array, 0, n)
			for i := range n {
				out = append(out, a[i%len(a)])
			}
			*s.ptr = out
		}
		return
	case "append":
		if a, ok := (*s.ptr).(array); ok {
			var like node
			if len(a) > 0 {
				like = a[0]
			}
			*s.ptr = append(slices.Clone(a), g.jsonValue(like))
		}
		return
	}
	*s.ptr = g.jsonClassValue(m.class, *s.ptr)
}

// jsonClassValue returns a hostile JSON value of class in place of old.
func (g *gen) jsonClassValue(class string, old node) node {
	s := ""
	switch o := old.(type) {
	case str:
		s = string(o)
	case raw:
		s = string(o)
	}
	switch class {
	case "jnumber":
		return raw(pick(g, numbers))
	case "badnumber":
		return raw(pick(g, badNumbers))
	case "quoted":
		return str(s)
	case "type":
		return raw(pick(g, []string{"true", "false", "null", "[]", "{}", `[""]`, `{"":null}`, "0", `""`, `[1]`, `{"a":"b"}`}))
	case "escape":
		return raw(pick(g, []string{`"\ud800"`, `"\u0000"`, `"\udfff\ud800"`, `"a\u0000b"`, `"\u001b[2J"`,
			`"\uFEFF"`, `"\/"`, `"\u00e9"`, `"\""`}))
	case "nest":
		d := pick(g, []int{32, 1000, 10001})
		if g.chance(0.5) {
			return raw(strings.Repeat("[", d) + strings.Repeat("]", d))
		}
		return raw(strings.Repeat(`{"a":`, d) + "1" + strings.Repeat("}", d))
	}
	return str(g.classValue(class, s))
}

// jsonValue is a hostile value of any class in place of old.
func (g *gen) jsonValue(old node) node {
	if g.chance(0.5) {
		return g.jsonClassValue(pick(g, stringClasses), old)
	}
	return g.jsonClassValue(pick(g, []string{"jnumber", "badnumber", "quoted", "type", "escape", "nest"}), old)
}
