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
//	RESULT name=<n> requests=<n> rps=<f> p50_ms=<f> p95_ms=<f> p99_ms=<f> errors=<n> hits=<n> late=<n>
//
// hits counts responses with X-Cache: HIT.
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
	"context"
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
	if err := run(os.Args, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "readbench:", err)
		os.Exit(1)
	}
}

// target is one server under measurement and what was measured so far.
type target struct {
	name, base string
	revalidate bool
	etags      []string // by sku number, for revalidate
	latencies  []time.Duration
	measured   time.Duration
	errors     int
	hits       int
	late       int
}

// targets collects the repeatable -t flag.
type targets []*target

func (ts *targets) String() string { return fmt.Sprint(len(*ts), " targets") }

func (ts *targets) Set(v string) error {
	name, url, ok := strings.Cut(v, "=")
	if !ok || name == "" || url == "" {
		return errors.New("want name=URL or name=304+URL")
	}
	t := &target{name: name}
	t.base, t.revalidate = strings.CutPrefix(url, "304+")
	*ts = append(*ts, t)
	return nil
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("readbench", flag.ContinueOnError)
	var ts targets
	fs.Var(&ts, "t", "target name=URL, or name=304+URL for If-None-Match (repeatable)")
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

	for _, t := range ts {
		if !t.revalidate {
			continue
		}
		t.etags = make([]string, *hot+1)
		for i := 1; i <= *hot; i++ {
			resp, err := client.Get(url(t, i))
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
			lat                []time.Duration
			errors, hits, late int
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
				// Open model: worker w owns every conc-th slot of the
				// schedule, starting at slot w.
				var interval time.Duration
				next := start
				if *rate > 0 {
					interval = time.Duration(float64(*conc) / *rate * float64(time.Second))
					next = start.Add(time.Duration(float64(w) / *rate * float64(time.Second)))
				}
				for ctx.Err() == nil {
					i := 1 + rng.IntN(*hot)
					req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url(t, i), nil)
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
					resp, err := client.Do(req)
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
			phase(t, min(*slice, *dur-done), true)
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
		fmt.Fprintf(stdout, "RESULT name=%s requests=%d rps=%.0f p50_ms=%.3f p95_ms=%.3f p99_ms=%.3f errors=%d hits=%d late=%d\n",
			t.name, len(all), float64(len(all))/t.measured.Seconds(), pct(0.50), pct(0.95), pct(0.99), t.errors, t.hits, t.late)
	}
	return nil
}
