// Package periodic runs a service's background work, such as sweeps and
// retries, at a fixed interval until the process stops.
package periodic

import (
	"context"
	"time"
)

// Run calls fn every interval, the first time one interval from now, until
// ctx is done. A call under way when ctx ends is not interrupted; fn gets
// ctx to stop early itself.
func Run(ctx context.Context, interval time.Duration, fn func(context.Context)) {
	RunOrWake(ctx, interval, nil, fn)
}

// RunOrWake is Run that also calls fn as soon as wake receives, for work
// that another part of the service can hand over at once (a nil wake
// never receives).
func RunOrWake(ctx context.Context, interval time.Duration, wake <-chan struct{}, fn func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-wake:
		}
		fn(ctx)
	}
}
