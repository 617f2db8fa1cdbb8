package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/orderflow/orderflow/test/stack"
)

// profiledServices are the Go processes -pprof profiles during the orders
// peak: the four services and the simulated provider.
var profiledServices = []string{"order", "inventory", "payment", "notification", "provider"}

// debugEnv gives each profiled service a DEBUG_ADDR on a free port (the
// pprof listener of pkg/telemetry) and returns where each listens; with
// -pprof unset it does nothing.
func (e *environment) debugEnv(serviceEnv map[string][]string) (map[string]string, error) {
	if e.o.pprof == "" {
		return nil, nil
	}
	addrs := map[string]string{}
	for _, svc := range profiledServices {
		port, err := stack.FreePort()
		if err != nil {
			return nil, err
		}
		addrs[svc] = fmt.Sprintf("127.0.0.1:%d", port)
		serviceEnv[svc] = append(serviceEnv[svc], "DEBUG_ADDR="+addrs[svc])
	}
	return addrs, nil
}

// takeProfiles runs measure while each service in debug records a CPU
// profile for about as long as measure lasts (secs), written to
// -pprof/<key>-<service>.pprof for `go tool pprof`.
func (e *environment) takeProfiles(ctx context.Context, debug map[string]string, key string, secs time.Duration, measure func() error) error {
	if len(debug) == 0 {
		return measure()
	}
	if err := os.MkdirAll(e.o.pprof, 0o755); err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(debug))
	for svc, addr := range debug {
		wg.Go(func() {
			path := filepath.Join(e.o.pprof, key+"-"+svc+".pprof")
			if err := fetchProfile(ctx, addr, secs, path); err != nil {
				errs <- fmt.Errorf("profile %s: %w", svc, err)
			}
		})
	}
	err := measure()
	wg.Wait()
	close(errs)
	for perr := range errs {
		say("%v", perr) // a missing profile does not void the measurement
	}
	return err
}

// fetchProfile asks the pprof listener at addr for a CPU profile of secs
// and writes it to path.
func fetchProfile(ctx context.Context, addr string, secs time.Duration, path string) error {
	ctx, cancel := context.WithTimeout(ctx, secs+30*time.Second)
	defer cancel()
	u := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, int(secs.Seconds()))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", u, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
