// Package webtest drives an HTTP handler with generated hostile requests:
// every route of a chi router, with invalid UTF-8, NUL and control
// characters, very long values, non-canonical UUIDs, numbers at the int64 and
// float64 edges, wrong JSON types, deep nesting, duplicate keys and huge
// bodies in its path parameters, query, headers and body. A request answered
// with a 5xx, or a 4xx without a problem body, is a failure. The sequence of
// requests depends only on the seed, which every failure names.
//
// Each route is driven twice over: first one request per place and class of
// hostile value (each JSON field with a NUL, with invalid UTF-8, with a
// number past int64, …), behind a token the route accepts, so every class
// reaches every field's use case once per run; then random requests that
// combine up to three such changes and any caller.
//
// The generator is seeded rather than coverage-guided (go test -fuzz), so one
// run covers every route of a service in a few seconds as part of the normal
// test suite, against the real database behind the handler.
package webtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
)

// Route is one route of the handler under test and a valid way to call it;
// each request changes one to three parts of that call into something
// hostile, so the hostile part gets past the checks of the parts it keeps.
//
// In every value, "$uuid" becomes a new random UUID and "$unique" a string
// no other request of the run uses (for Idempotency-Keys, e-mail addresses).
type Route struct {
	Method  string
	Pattern string // as registered: "/v1/orders/{id}"
	// Params holds a valid value of each path parameter of Pattern.
	Params map[string]string
	// Query holds the query parameters the route reads, with valid values.
	Query map[string]string
	// Header holds the headers a valid call sends, besides Authorization.
	Header map[string]string
	// Body is a valid body: JSON, or application/x-www-form-urlencoded when
	// Form is set. Its Content-Type is set unless Header names one.
	Body string
	Form bool
	// Tokens are bearer tokens of callers the route lets through (empty
	// for an anonymous route).
	Tokens []string
	// HTML marks a browser route whose errors are HTML pages, not
	// problem+json.
	HTML bool
}

// Config configures Run and Drive.
type Config struct {
	Routes []Route
	// Tokens are all the bearer tokens the handler's authenticator knows;
	// requests also go out with the wrong one for a route.
	Tokens []string
	// Seed fixes the requests. Zero: $HOSTILE_SEED, else a random seed.
	Seed uint64
	// N is the number of random requests per route, after the systematic
	// ones. Zero: $HOSTILE_N, else 40.
	N int
	// After, when set, runs after each request (to undo what a hostile
	// but valid admin call changed, for instance).
	After func()
	// Timeout is how long one request may take (zero: 30 s); a request
	// still running then is a failure and ends the run.
	Timeout time.Duration
	// Wrap, when set, is the middleware main puts in front of the router
	// (web.ClientAddr, for one): requests go through it. Requests come
	// from 192.0.2.1, httptest's client address.
	Wrap func(http.Handler) http.Handler
}

// Report is what Drive saw.
type Report struct {
	Seed     uint64
	Requests int
	// Statuses counts the answers per route ("GET /v1/orders/{id}") and
	// status.
	Statuses map[string]map[int]int
	Failures []Failure
	// Dropped counts the failing requests not in Failures: repeats of one
	// already there, or past the first maxFailures.
	Dropped int
}

// maxFailures bounds the failures a report lists.
const maxFailures = 40

// Failure is one request the handler answered wrongly.
type Failure struct {
	Seed     uint64
	Route    string
	Mutation string // what was changed: "body items[0].sku: nul"
	Request  string // the request as sent: line, headers, body
	Status   int
	Body     string
	Reason   string
}

func (f Failure) String() string {
	return fmt.Sprintf("%s: %s, with %s (seed %d; repeat with HOSTILE_SEED=%d)\n--- request\n%s\n--- answer %d\n%s",
		f.Route, f.Reason, f.Mutation, f.Seed, f.Seed, f.Request, f.Status, f.Body)
}

// Run checks that cfg.Routes are exactly the routes of h (a chi router), then
// drives them and reports every failure on t: one per route, answer and
// change made, with the request that caused it.
func Run(t *testing.T, h http.Handler, cfg Config) {
	t.Helper()
	if err := CheckRoutes(h, cfg.Routes); err != nil {
		t.Fatal(err)
	}
	cfg, err := settle(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("hostile: seed %d, %d random requests per route after the systematic ones (repeat with HOSTILE_SEED=%d, more with HOSTILE_N)",
		cfg.Seed, cfg.N, cfg.Seed)
	if cfg.Wrap != nil {
		h = cfg.Wrap(h)
	}
	rep := Drive(h, cfg)
	for _, f := range rep.Failures {
		t.Error(f)
	}
	if rep.Dropped > 0 {
		t.Errorf("hostile: %d more failing requests like those above", rep.Dropped)
	}
	t.Logf("hostile: %d requests; answers per route:", rep.Requests)
	for _, route := range slices.Sorted(maps.Keys(rep.Statuses)) {
		t.Logf("hostile: %-45s %v", route, rep.Statuses[route])
	}
}

// settle fills the zero fields of cfg from the environment and defaults.
func settle(cfg Config) (Config, error) {
	if cfg.Seed == 0 {
		if s := os.Getenv("HOSTILE_SEED"); s != "" {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil || n == 0 {
				return cfg, fmt.Errorf("HOSTILE_SEED=%q: want a positive integer", s)
			}
			cfg.Seed = n
		} else {
			cfg.Seed = rand.Uint64()>>1 | 1
		}
	}
	if cfg.N == 0 {
		cfg.N = 40
		if s := os.Getenv("HOSTILE_N"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				return cfg, fmt.Errorf("HOSTILE_N=%q: want a positive integer", s)
			}
			cfg.N = n
		}
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	return cfg, nil
}

// CheckRoutes returns an error unless routes lists exactly the routes of h,
// which must be a chi router: a route added to the router without hostile
// coverage, or one the table names and the router lost, fails the test.
func CheckRoutes(h http.Handler, routes []Route) error {
	rt, ok := h.(chi.Routes)
	if !ok {
		return fmt.Errorf("the handler is a %T, not a chi router: its routes cannot be listed", h)
	}
	have := map[string]bool{}
	if err := chi.Walk(rt, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		have[method+" "+route] = true
		return nil
	}); err != nil {
		return fmt.Errorf("walk the router: %w", err)
	}
	var errs []error
	want := map[string]bool{}
	for _, r := range routes {
		name := r.Method + " " + r.Pattern
		if want[name] {
			errs = append(errs, fmt.Errorf("route %s is in the table twice", name))
		}
		want[name] = true
		if !have[name] {
			errs = append(errs, fmt.Errorf("route %s is in the table but not in the router", name))
		}
		for _, p := range patternParams(r.Pattern) {
			if _, ok := r.Params[p]; !ok {
				errs = append(errs, fmt.Errorf("route %s: no valid value for path parameter %q", name, p))
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(have)) {
		if !want[name] {
			errs = append(errs, fmt.Errorf("route %s is not in the hostile-input table: add it with a valid call", name))
		}
	}
	return errors.Join(errs...)
}

// patternParams returns the names of the {params} of a chi pattern.
func patternParams(pattern string) []string {
	var out []string
	for _, seg := range strings.Split(pattern, "/") {
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			name, _, _ := strings.Cut(seg[1:len(seg)-1], ":")
			out = append(out, name)
		}
	}
	return out
}

// Drive sends hostile requests to each of cfg.Routes and returns what came
// back. First, for each route, one request per mutation the route allows
// (each part of the call, each hostile class of value), behind a token the
// route accepts; then cfg.N requests per route, in turn, each with one to
// three mutations and any caller. The routes are not checked against h,
// and cfg.Wrap is not applied.
func Drive(h http.Handler, cfg Config) Report {
	cfg, err := settle(cfg)
	if err != nil {
		return Report{Failures: []Failure{{Reason: err.Error()}}}
	}
	g := &gen{rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)), seed: cfg.Seed, tokens: cfg.Tokens}
	rep := Report{Seed: cfg.Seed, Statuses: map[string]map[int]int{}}
	seen := map[string]bool{}
	randomListed := 0
	// send sends one request and reports false when the run must stop.
	send := func(route Route, muts []mutation, anyCaller bool) bool {
		name := route.Method + " " + route.Pattern
		req, dump := g.request(route, muts, anyCaller)
		var what []string
		for _, m := range muts {
			what = append(what, m.String())
		}
		mutation := strings.Join(what, ", ")
		rec, ok := serve(h, req, cfg.Timeout)
		rep.Requests++
		if !ok {
			rep.Failures = append(rep.Failures, Failure{Seed: cfg.Seed, Route: name, Mutation: mutation, Request: dump,
				Reason: fmt.Sprintf("no answer within %s", cfg.Timeout)})
			return false
		}
		if cfg.After != nil {
			cfg.After()
		}
		if rep.Statuses[name] == nil {
			rep.Statuses[name] = map[int]int{}
		}
		rep.Statuses[name][rec.Code]++
		reason, code := judge(route, rec)
		if reason == "" {
			return true
		}
		// One failure per route, answer and what was changed; the random
		// phase's combinations add no new kinds after the first few.
		key := fmt.Sprintf("%s %d %s %s %s", name, rec.Code, code, reason, mutation)
		if !seen[key] && (!anyCaller || randomListed < 5) && len(rep.Failures) < maxFailures {
			seen[key] = true
			if anyCaller {
				randomListed++
			}
			rep.Failures = append(rep.Failures, Failure{Seed: cfg.Seed, Route: name, Mutation: mutation, Request: dump,
				Status: rec.Code, Body: clip(rec.Body.String(), 2000), Reason: reason})
			return true
		}
		rep.Dropped++
		return true
	}
	all := make([][]mutation, len(cfg.Routes))
	for i, route := range cfg.Routes {
		all[i] = g.mutations(route)
		for _, m := range all[i] {
			if !send(route, []mutation{m}, false) {
				return rep
			}
		}
	}
	for i := range cfg.N * len(cfg.Routes) {
		route, muts := cfg.Routes[i%len(cfg.Routes)], all[i%len(cfg.Routes)]
		var some []mutation
		for range 1 + g.intn(3) {
			some = append(some, pick(g, muts))
		}
		if !send(route, some, true) {
			return rep
		}
	}
	return rep
}

// serve runs one request, giving up after timeout.
func serve(h http.Handler, req *http.Request, timeout time.Duration) (*httptest.ResponseRecorder, bool) {
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.ServeHTTP(rec, req)
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-done:
		return rec, true
	case <-timer.C:
		return nil, false
	}
}

// judge returns why an answer is wrong ("" when it is not) and its problem
// code.
func judge(route Route, rec *httptest.ResponseRecorder) (reason, code string) {
	var p struct {
		Code   string `json:"code"`
		Status int    `json:"status"`
	}
	isProblem := false
	if mt, _, err := mime.ParseMediaType(rec.Header().Get("Content-Type")); err == nil && mt == "application/problem+json" {
		isProblem = json.Unmarshal(rec.Body.Bytes(), &p) == nil && p.Code != "" && p.Status == rec.Code
	}
	switch {
	case rec.Code >= 500:
		return "a hostile request got a server error", p.Code
	case rec.Code < 400 || isProblem:
		return "", p.Code
	case route.HTML && strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html"):
		return "", ""
	default:
		return "a 4xx without a problem+json body naming its code and status", ""
	}
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("%s… (%d bytes in all)", s[:n], len(s))
}
