// Command readbench is the load generator of `make bench-read`: a fixed
// number of keep-alive workers send GET /v1/products/{sku} for random skus of
// a hot set, and it prints throughput and latency percentiles per target.
//
// Targets are given as -t name=URL (repeatable); a URL written 304+URL
// first learns the ETag of every sku and then sends If-None-Match, measuring
// the 304 path. The targets are measured in interleaved slices (round robin,
// -slice each, until every target had -d): a machine whose background load
// changes during the run then slows every target alike, instead of whichever
// happened to run at the time.
//
// It prints one line per target a script can read:
//
//	RESULT name=<n> requests=<n> rps=<f> p50_ms=<f> p95_ms=<f> p99_ms=<f> errors=<n> hits=<n> http2=<n> late=<n>
//
// hits counts responses with X-Cache: HIT, http2 those that came over
// HTTP/2.
//
// Prefixes of a target's URL, combinable (304+h1+auth+https://…):
//
//	304+   revalidate with If-None-Match (above)
//	auth+  send an access token: worker w sends line w of -tokens
//	h1+    an https target over HTTP/1.1 keep-alive; https targets speak
//	       HTTP/2 otherwise (ALPN), one connection per worker, as if
//	       each worker were a client of its own; -cacert is the CA they trust
//
// With -r name=FILE, target name sends the requests of FILE instead of
// product reads: lines "PATH TOKEN" (GET PATH with that access token), one
// picked at random for each request (GET /v1/orders/{id} as its owner).
//
// With -marks, readbench prints "MARK begin <name>" before and "MARK end
// <name>" after each measured slice and waits for a line on stdin before it
// goes on, so the caller can sample what every process spent on the slice
// (loadtest/bench: CPU per request by process).
//
// With -rate N the load is open instead of closed: requests start on a
// fixed schedule, N per second across all workers, whatever the latency, and
// each latency counts from the request's scheduled start, so a server that
// falls behind shows its queue in the percentiles (no coordinated omission).
// That is how two servers are compared at the same load; the closed model
// (back-to-back requests) measures how much each can serve. late counts
// requests that started more than 1 ms behind schedule: all workers were busy.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

func main() {
	if err := run(os.Args, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "readbench:", err)
		os.Exit(1)
	}
}

// target is one server under measurement and what was measured so far.
type target struct {
	name, base string
	revalidate bool
	auth       bool // product reads carry the worker's token (-tokens)
	http1      bool // an https target over HTTP/1.1
	requests   []request
	clients    []*http.Client // https targets: one per worker
	etags      []string       // by sku number, for revalidate
	latencies  []time.Duration
	measured   time.Duration
	errors     int
	hits       int
	http2      int
	late       int
}

// request is one line of a -r file.
type request struct{ path, token string }

// targets collects the repeatable -t flag.
type targets []*target

func (ts *targets) String() string { return fmt.Sprint(len(*ts), " targets") }

func (ts *targets) Set(v string) error {
	name, url, ok := strings.Cut(v, "=")
	if !ok || name == "" || url == "" {
		return errors.New("want name=URL or name=304+URL")
	}
	t := &target{name: name}
	for cut := true; cut; {
		switch {
		case strings.HasPrefix(url, "304+"):
			t.revalidate, url = true, url[len("304+"):]
		case strings.HasPrefix(url, "auth+"):
			t.auth, url = true, url[len("auth+"):]
		case strings.HasPrefix(url, "h1+"):
			t.http1, url = true, url[len("h1+"):]
		default:
			cut = false
		}
	}
	t.base = url
	*ts = append(*ts, t)
	return nil
}

// requestFiles collects the repeatable -r flag: target name → file.
type requestFiles map[string]string

func (rf requestFiles) String() string { return fmt.Sprint(len(rf), " request files") }

func (rf requestFiles) Set(v string) error {
	name, file, ok := strings.Cut(v, "=")
	if !ok || name == "" || file == "" {
		return errors.New("want name=FILE")
	}
	rf[name] = file
	return nil
}

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("readbench", flag.ContinueOnError)
	var ts targets
	reqFiles := requestFiles{}
	fs.Var(&ts, "t", "target name=URL; URL prefixes 304+, auth+, h1+ (repeatable)")
	fs.Var(reqFiles, "r", "name=FILE: target name sends FILE's requests (lines PATH TOKEN) instead of product reads (repeatable)")
	caFile := fs.String("cacert", "", "CA certificate (PEM) that https targets are checked against (default: the system's)")
	tokensFile := fs.String("tokens", "", "access tokens, one per line, for auth+ targets")
	marks := fs.Bool("marks", false, "print MARK lines around each measured slice and wait for a line on stdin after each")
	conc := fs.Int("c", 32, "concurrent keep-alive workers")
	dur := fs.Duration("d", 10*time.Second, "measured duration per target")
	slice := fs.Duration("slice", 2*time.Second, "length of one interleaved slice")
	warm := fs.Duration("warmup", 2*time.Second, "unmeasured warm-up per target (fills caches, opens connections)")
	hot := fs.Int("skus", 1000, "size of the hot set: SKU-00001 … SKU-n")
	rate := fs.Float64("rate", 0, "open model: requests per second across all workers (0: closed model, back to back)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if len(ts) == 0 {
		return errors.New("no target: pass -t name=URL")
	}
	if *rate < 0 || *conc < 1 {
		return errors.New("-rate must not be negative and -c must be at least 1")
	}
	transport := &http.Transport{MaxIdleConns: *conc * 2 * len(ts), MaxIdleConnsPerHost: *conc * 2, DisableCompression: true}
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	defer transport.CloseIdleConnections()
	url := func(t *target, i int) string { return fmt.Sprintf("%s/v1/products/SKU-%05d", t.base, i) }

	var roots *x509.CertPool // nil: the system's
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return err
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%s holds no PEM certificate", *caFile)
		}
	}
	var tokens []string
	if *tokensFile != "" {
		var err error
		if tokens, err = lines(*tokensFile); err != nil {
			return err
		}
	}
	for _, t := range ts {
		if t.auth && len(tokens) == 0 {
			return fmt.Errorf("target %s sends tokens (auth+): pass -tokens", t.name)
		}
		if f, ok := reqFiles[t.name]; ok {
			ls, err := lines(f)
			if err != nil {
				return err
			}
			for _, l := range ls {
				path, token, ok := strings.Cut(l, " ")
				if !ok || !strings.HasPrefix(path, "/") {
					return fmt.Errorf("%s: want lines PATH TOKEN, got %q", f, l)
				}
				t.requests = append(t.requests, request{path, strings.TrimSpace(token)})
			}
			delete(reqFiles, t.name)
		}
		if !strings.HasPrefix(t.base, "https://") {
			continue
		}
		for range *conc {
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
				ForceAttemptHTTP2: !t.http1, MaxIdleConnsPerHost: 2, DisableCompression: true}
			defer tr.CloseIdleConnections()
			t.clients = append(t.clients, &http.Client{Transport: tr, Timeout: 10 * time.Second})
		}
	}
	for name := range reqFiles {
		return fmt.Errorf("-r %s: no such target", name)
	}
	in := bufio.NewReader(stdin)
	mark := func(what string, t *target) error {
		if !*marks {
			return nil
		}
		fmt.Fprintf(stdout, "MARK %s %s\n", what, t.name)
		if _, err := in.ReadString('\n'); err != nil {
			return fmt.Errorf("-marks: waiting for the go-ahead on stdin: %w", err)
		}
		return nil
	}

	for _, t := range ts {
		if !t.revalidate {
			continue
		}
		c := client
		if t.clients != nil {
			c = t.clients[0]
		}
		t.etags = make([]string, *hot+1)
		for i := 1; i <= *hot; i++ {
			resp, err := c.Get(url(t, i))
			if err != nil {
				return fmt.Errorf("learn etag: %w", err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if t.etags[i] = resp.Header.Get("ETag"); t.etags[i] == "" {
				return fmt.Errorf("%s has no ETag", url(t, i))
			}
		}
	}

	// phase runs conc workers against t for d and records what they saw
	// when record is set.
	phase := func(t *target, d time.Duration, record bool) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		type tally struct {
			lat                       []time.Duration
			errors, hits, http2, late int
		}
		tallies := make([]tally, *conc)
		want := http.StatusOK
		if t.revalidate {
			want = http.StatusNotModified
		}
		var wg sync.WaitGroup
		start := time.Now()
		for w := range *conc {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
				tl := &tallies[w]
				c := client
				if t.clients != nil {
					c = t.clients[w]
				}
				// Open model: worker w owns every conc-th slot of the
				// schedule, starting at slot w.
				var interval time.Duration
				next := start
				if *rate > 0 {
					interval = time.Duration(float64(*conc) / *rate * float64(time.Second))
					next = start.Add(time.Duration(float64(w) / *rate * float64(time.Second)))
				}
				for ctx.Err() == nil {
					var req *http.Request
					i := 1 + rng.IntN(*hot)
					if t.requests != nil {
						rq := t.requests[rng.IntN(len(t.requests))]
						req, _ = http.NewRequestWithContext(ctx, http.MethodGet, t.base+rq.path, nil)
						req.Header.Set("Authorization", "Bearer "+rq.token)
					} else {
						req, _ = http.NewRequestWithContext(ctx, http.MethodGet, url(t, i), nil)
						if t.auth {
							req.Header.Set("Authorization", "Bearer "+tokens[w%len(tokens)])
						}
					}
					if t.revalidate {
						req.Header.Set("If-None-Match", t.etags[i])
					}
					begin := time.Now()
					if interval > 0 {
						if wait := time.Until(next); wait > 0 {
							time.Sleep(wait)
						} else if wait < -time.Millisecond {
							tl.late++
						}
						begin = next // latency counts from the scheduled start
						next = next.Add(interval)
						if ctx.Err() != nil {
							return
						}
					}
					resp, err := c.Do(req)
					if err != nil {
						if ctx.Err() == nil {
							tl.errors++
						}
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					elapsed := time.Since(begin)
					if ctx.Err() != nil {
						return // cut off by the end of the slice: not a full request
					}
					if resp.StatusCode != want {
						tl.errors++
						continue
					}
					if resp.Header.Get("X-Cache") == "HIT" {
						tl.hits++
					}
					if resp.ProtoMajor == 2 {
						tl.http2++
					}
					tl.lat = append(tl.lat, elapsed)
				}
			})
		}
		wg.Wait()
		if !record {
			return
		}
		t.measured += time.Since(start)
		for _, tl := range tallies {
			t.latencies = append(t.latencies, tl.lat...)
			t.errors += tl.errors
			t.hits += tl.hits
			t.http2 += tl.http2
			t.late += tl.late
		}
	}

	for _, t := range ts {
		if *warm > 0 {
			phase(t, *warm, false)
		}
	}
	for done := time.Duration(0); done < *dur; done += *slice {
		for _, t := range ts {
			if err := mark("begin", t); err != nil {
				return err
			}
			phase(t, min(*slice, *dur-done), true)
			if err := mark("end", t); err != nil {
				return err
			}
		}
	}

	for _, t := range ts {
		if len(t.latencies) == 0 {
			return fmt.Errorf("%s: no successful request (%d errors)", t.name, t.errors)
		}
		all := t.latencies
		slices.Sort(all)
		pct := func(p float64) float64 {
			return float64(all[min(len(all)-1, int(p*float64(len(all))))].Microseconds()) / 1000
		}
		fmt.Fprintf(stdout, "RESULT name=%s requests=%d rps=%.0f p50_ms=%.3f p95_ms=%.3f p99_ms=%.3f errors=%d hits=%d http2=%d late=%d\n",
			t.name, len(all), float64(len(all))/t.measured.Seconds(), pct(0.50), pct(0.95), pct(0.99), t.errors, t.hits, t.http2, t.late)
	}
	return nil
}

// lines returns the file's non-empty lines, trimmed.
func lines(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s is empty", path)
	}
	return out, nil
}
