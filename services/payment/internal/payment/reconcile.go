package payment

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/orderflow/orderflow/pkg/periodic"
)

const (
	// reconcileBatch is the most unknown intents one round settles.
	reconcileBatch = 100
	// roundTimeout bounds one round, provider look-ups included.
	roundTimeout = time.Minute
)

// Reconcile runs one round of the reconciler: it settles the intents whose
// outcome is unknown and whose latest attempt began more than SettleAfter
// ago, by asking the provider for the charge made with each one's key
// (found: recorded as captured; none: abandoned, nothing to refund;
// provider unreachable: left for the next round).
func (s *Service) Reconcile(ctx context.Context) error {
	pending, err := s.store.Pending(ctx, s.cfg.SettleAfter, reconcileBatch)
	if err != nil {
		return err
	}
	var errs []error
	for _, in := range pending {
		if ctx.Err() != nil {
			break
		}
		if err := s.settle(ctx, in); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	return nil
}

// RunReconciler runs a Reconcile round every interval until ctx is done,
// each within roundTimeout. A failed round (the provider or the database
// away) is logged and the next one tries again.
func (s *Service) RunReconciler(ctx context.Context, interval time.Duration) {
	periodic.Run(ctx, interval, func(ctx context.Context) {
		rctx, cancel := context.WithTimeout(ctx, roundTimeout)
		err := s.Reconcile(rctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "reconcile round failed; retrying next round", "error", err)
		}
	})
}
