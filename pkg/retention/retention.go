// Package retention deletes rows that have served their purpose (answered
// idempotency keys, sent outbox rows, processed-event ids, finished
// reservations) in small batches, so a table does not grow for ever and no
// pass holds locks on many rows or runs one long transaction.
package retention

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/orderflow/orderflow/pkg/periodic"
)

// BatchSize is how many rows one delete statement removes at most.
const BatchSize = 1000

// Job is one table's retention rule.
type Job struct {
	// Name names the job in logs ("idempotency_keys").
	Name string
	// Keep is how long a row is kept once it qualifies.
	Keep time.Duration
	// Delete deletes at most limit qualifying rows older than before, in one
	// short statement, and returns how many it deleted. Rows locked by
	// another transaction are skipped (FOR UPDATE SKIP LOCKED), so two
	// replicas purging at once never wait for each other.
	Delete func(ctx context.Context, before time.Time, limit int) (int64, error)
}

// statementTimeout bounds one batch.
const statementTimeout = 10 * time.Second

// Purge runs every job once: batch after batch until a batch comes back
// short, or ctx ends. It returns the rows deleted per job, and every job's
// error (a failing job does not stop the others).
func Purge(ctx context.Context, now time.Time, jobs ...Job) (map[string]int64, error) {
	deleted := make(map[string]int64, len(jobs))
	var errs []error
	for _, j := range jobs {
		before := now.Add(-j.Keep)
		for ctx.Err() == nil {
			bctx, cancel := context.WithTimeout(ctx, statementTimeout)
			n, err := j.Delete(bctx, before, BatchSize)
			cancel()
			deleted[j.Name] += n
			if err != nil {
				errs = append(errs, fmt.Errorf("purge %s: %w", j.Name, err))
				break
			}
			if n < BatchSize {
				break
			}
		}
	}
	return deleted, errors.Join(errs...)
}

// Run purges every interval until ctx ends, logging what each pass deleted.
func Run(ctx context.Context, interval time.Duration, log *slog.Logger, jobs ...Job) {
	periodic.Run(ctx, interval, func(ctx context.Context) {
		deleted, err := Purge(ctx, time.Now(), jobs...)
		if err != nil && ctx.Err() == nil {
			log.ErrorContext(ctx, "retention pass failed", "error", err)
		}
		for name, n := range deleted {
			if n > 0 {
				log.InfoContext(ctx, "retention pass", "table", name, "deleted", n)
			}
		}
	})
}
