// Package serve runs the benchmark's small HTTP programs (the baselines and
// the proxies in front of the stack) until they are told to stop.
package serve

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// shutdownGrace is how long Run waits for requests in flight once ctx is done.
const shutdownGrace = 5 * time.Second

// Run serves srv until ctx is done, then shuts it down, letting requests in
// flight finish for up to five seconds. It returns early with the error
// that stopped the server (a port already taken, say).
func Run(ctx context.Context, srv *http.Server) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", srv.Addr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	return srv.Shutdown(sctx)
}
