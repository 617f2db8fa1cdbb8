package payment

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/orderflow/orderflow/pkg/auth"
)

// Provider is the external card processor as the service uses it. It is
// declared here, at the consumer, so tests can swap in a hand-written fake;
// *ProviderClient is the real one. Charge returns a *DeclinedError for a
// declined card; Admin reads (change nil) or changes the simulated
// provider's settings and returns its answer as it is.
type Provider interface {
	Charge(ctx context.Context, req ChargeRequest) (chargeID string, err error)
	ChargeByKey(ctx context.Context, key string) (ch ProviderCharge, found bool, err error)
	Refund(ctx context.Context, chargeID string) error
	Admin(ctx context.Context, change *ProviderSettings) (ProviderReply, error)
}

// Config tunes how duplicates of an in-flight request behave and when
// unknown outcomes are settled.
type Config struct {
	// PollInterval is how often a duplicate checks whether the first request
	// has finished (25ms when zero).
	PollInterval time.Duration
	// MaxWait bounds how long a duplicate waits before answering 409 (5s
	// when zero); set it a little above the provider timeout.
	MaxWait time.Duration
	// StaleAfter is the age after which an unfinished claim is considered
	// orphaned by a dead process and taken over (1m when zero).
	StaleAfter time.Duration
	// SettleAfter is the grace period of an intent whose outcome is
	// unknown: only once its latest attempt began longer ago than this may
	// the provider's "no such charge" be taken as final (the intent is
	// then abandoned, nothing to refund). Keep it well above the longest
	// provider call with its retries, so no request of the attempt can
	// still be on its way (2m when zero). A charge the provider does hold
	// settles the intent at any age.
	SettleAfter time.Duration
}

// KeyRetention is how long an answered Idempotency-Key (and its settled
// intent) is kept for replays: a retry within a day gets the first answer;
// later, the key is a new request. A key whose outcome is unknown is never
// deleted.
const KeyRetention = 24 * time.Hour

// recordTimeout bounds the writes that record what the provider answered,
// which run without the request's cancellation.
const recordTimeout = 10 * time.Second

// Service holds the payment use cases.
type Service struct {
	store    *Store
	provider Provider
	cfg      Config
	log      *slog.Logger

	settled struct{ captured, abandoned, unreachable atomic.Uint64 }
}

// NewService returns a service over store and provider.
func NewService(store *Store, provider Provider, cfg Config, log *slog.Logger) *Service {
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 25 * time.Millisecond
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 5 * time.Second
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = time.Minute
	}
	if cfg.SettleAfter <= 0 {
		cfg.SettleAfter = 2 * time.Minute
	}
	return &Service{store: store, provider: provider, cfg: cfg, log: log}
}

// Create captures a payment under caller's Idempotency-Key key: keys are
// scoped by the caller's token subject, so another caller's same key is
// another payment. The first request with a key claims it and writes its payment intent, charges the card with the
// intent's provider key and stores the outcome (captured or declined) with
// the key; later requests with the same key and body get that outcome back
// with replayed true, and duplicates that arrive while it runs wait for it.
// When the outcome is unknown (the provider timed out or failed, or storing
// its answer failed) the key and the intent stay: a retry takes the claim
// over and sends the same provider key again, so the provider returns the
// first charge if there was one, and the reconciler settles intents nobody
// retries. Only a charge that certainly did not happen releases the key.
// Errors: ErrKeyReused, ErrInProgress, the provider's and the store's.
// req must be normalized.
func (s *Service) Create(ctx context.Context, caller auth.Principal, key string, req CreateRequest) (out Outcome, replayed bool, err error) {
	k := Key{Caller: caller.Subject, Value: key}
	hash := req.Hash()
	id, err := uuid.NewV7()
	if err != nil {
		return Outcome{}, false, fmt.Errorf("new payment id: %w", err)
	}
	in := Intent{ID: id.String(), OrderID: req.OrderID, AmountCents: req.AmountCents, Currency: req.Currency,
		Method: req.Method, ProviderKey: k.ProviderKey()}
	waitCtx, cancel := context.WithTimeout(ctx, s.cfg.MaxWait)
	defer cancel()
	for {
		c, err := s.store.Claim(ctx, k, hash, in, s.cfg.StaleAfter)
		if err != nil {
			return Outcome{}, false, err
		}
		switch {
		case c.Owned:
			out, err := s.capture(ctx, c)
			if errors.Is(err, errClaimLost) {
				continue // someone else answered the key: replay theirs
			}
			return out, false, err
		case c.Gone:
			continue
		case !bytes.Equal(c.Hash, hash):
			return Outcome{}, false, ErrKeyReused
		case c.Answered:
			return c.Outcome, true, nil
		}
		t := time.NewTimer(s.cfg.PollInterval)
		select {
		case <-waitCtx.Done():
			t.Stop()
			return Outcome{}, false, ErrInProgress
		case <-t.C:
		}
	}
}

// capture does the work of a claimed key: it charges the claim's intent
// and records what the provider answered.
func (s *Service) capture(ctx context.Context, c claim) (Outcome, error) {
	in := c.Intent
	chargeID, err := s.provider.Charge(ctx, ChargeRequest{
		AmountCents:    in.AmountCents,
		Currency:       in.Currency,
		Method:         in.Method,
		IdempotencyKey: in.ProviderKey,
	})
	// Once the provider has answered, the outcome must be recorded even if
	// the client hung up meanwhile, so the rest runs without its cancellation.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()

	var declined *DeclinedError
	switch {
	case errors.As(err, &declined):
		if err := s.store.Decline(dctx, in.Key, c.Token, declined.DeclineCode); err != nil {
			// Nothing was charged: the reconciler finds no charge for
			// the intent and abandons it.
			return Outcome{}, s.park(dctx, in.Key, c.Token, err)
		}
		return Outcome{DeclineCode: declined.DeclineCode}, nil
	case errors.Is(err, ErrNotCharged) && c.Fresh:
		if _, rerr := s.store.Release(dctx, in.Key, c.Token); rerr != nil {
			s.log.ErrorContext(ctx, "release idempotency key", "error", rerr)
		}
		return Outcome{}, err
	case err != nil:
		// Also a taken-over intent that this attempt did not charge: an
		// earlier attempt may have.
		return Outcome{}, s.park(dctx, in.Key, c.Token, err)
	}

	p := in.payment(chargeID, time.Now().UTC().Truncate(time.Microsecond))
	if err := s.store.Capture(dctx, in.Key, &c.Token, p); err != nil {
		// The charge exists at the provider but is not recorded here. The
		// intent stays pending with its key: a retry gets the same charge
		// from the provider, and the reconciler or a list of the order's
		// payments records it by asking the provider by key.
		return Outcome{}, s.park(dctx, in.Key, c.Token, fmt.Errorf("record charge %s: %w", chargeID, err))
	}
	return Outcome{Payment: p}, nil
}

// park marks the claim as ended with the outcome unknown, best effort (the
// database may be what failed), and returns cause.
func (s *Service) park(ctx context.Context, key Key, token time.Time, cause error) error {
	if errors.Is(cause, errClaimLost) {
		return cause
	}
	if err := s.store.Park(ctx, key, token); err != nil {
		s.log.WarnContext(ctx, "park idempotency key; a retry waits for the claim to go stale", "error", err)
	}
	return cause
}

// settle settles one intent whose outcome is unknown by asking the
// provider for the charge made with its key: a charge found is recorded as
// the captured payment; none found abandons a ripe intent (nothing was
// charged, nothing to refund) and leaves an unripe one for later
// (errUnripe). Each outcome is counted for the metric.
func (s *Service) settle(ctx context.Context, in Intent) error {
	ch, found, err := s.provider.ChargeByKey(ctx, in.ProviderKey)
	if err != nil {
		s.settled.unreachable.Add(1)
		return fmt.Errorf("look up the charge of intent %s: %w", in.ID, err)
	}
	if found {
		if ch.AmountCents != in.AmountCents || ch.Currency != in.Currency {
			return fmt.Errorf("provider charge %s of intent %s is %d %s; want %d %s",
				ch.ID, in.ID, ch.AmountCents, ch.Currency, in.AmountCents, in.Currency)
		}
		p := in.payment(ch.ID, time.Now().UTC().Truncate(time.Microsecond))
		switch err := s.store.Capture(ctx, in.Key, nil, p); {
		case errors.Is(err, errClaimLost):
			return nil // answered meanwhile, by its request or another replica
		case err != nil:
			return err
		}
		s.settled.captured.Add(1)
		s.log.InfoContext(ctx, "payment intent settled", "outcome", SettledCaptured, "payment_id", p.ID,
			"order_id", p.OrderID, "provider_charge_id", ch.ID)
		return nil
	}
	if !in.Ripe {
		return errUnripe
	}
	// Fenced by the token: a retry that took the claim over since it was
	// read is sending a charge now, and keeps the intent.
	gone, err := s.store.Release(ctx, in.Key, in.Token)
	if err != nil || !gone {
		return err
	}
	s.settled.abandoned.Add(1)
	s.log.InfoContext(ctx, "payment intent settled", "outcome", SettledAbandoned, "intent_id", in.ID,
		"order_id", in.OrderID)
	return nil
}

// settledCounts returns how many unknown intents were settled since start,
// by outcome (SettledCaptured, SettledAbandoned, SettledUnreachable: a
// look-up that failed and is tried again).
func (s *Service) settledCounts() map[string]uint64 {
	return map[string]uint64{
		SettledCaptured:    s.settled.captured.Load(),
		SettledAbandoned:   s.settled.abandoned.Load(),
		SettledUnreachable: s.settled.unreachable.Load(),
	}
}

// Instrument exports on m how many unknown intents were settled since
// start, orderflow_payment_intents_settled_total{outcome}, read when
// scraped. Every outcome is a series from the start, at 0 until it happens.
func (s *Service) Instrument(m metric.Meter) error {
	attrs := map[string]metric.ObserveOption{}
	for _, outcome := range []string{SettledCaptured, SettledAbandoned, SettledUnreachable} {
		attrs[outcome] = metric.WithAttributeSet(attribute.NewSet(attribute.String("outcome", outcome)))
	}
	_, err := m.Int64ObservableCounter("orderflow.payment.intents.settled",
		metric.WithDescription("Payment intents whose outcome was unknown, settled with the provider by key, by outcome: "+
			"captured (the charge was found and recorded), abandoned (no charge: nothing to refund), "+
			"unreachable (the look-up failed; tried again)."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			for outcome, n := range s.settledCounts() {
				o.Observe(int64(n), attrs[outcome])
			}
			return nil
		}))
	if err != nil {
		return fmt.Errorf("payment metrics: %w", err)
	}
	return nil
}

// Get returns one payment.
func (s *Service) Get(ctx context.Context, id string) (Payment, error) {
	return s.store.Get(ctx, id)
}

// ListByOrder returns an order's payments, newest first. The order's
// intents whose outcome is unknown are settled with the provider first, so
// the list never misses a charge: the order service refunds what it lists
// for a failed order. When one cannot be settled yet (the provider cannot
// be asked, or holds no charge for an intent still in its grace period)
// the answer is ErrUnsettled, and the caller retries later.
func (s *Service) ListByOrder(ctx context.Context, orderID string) ([]Payment, error) {
	pending, err := s.store.PendingForOrder(ctx, orderID, s.cfg.SettleAfter)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, in := range pending {
		if err := s.settle(ctx, in); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnsettled, err)
	}
	return s.store.ListByOrder(ctx, orderID)
}

// Refund refunds a captured payment. An already refunded payment is returned
// without calling the provider; a concurrent double refund is still safe
// because the provider's refund is idempotent.
func (s *Service) Refund(ctx context.Context, id string) (Payment, error) {
	p, err := s.store.Get(ctx, id)
	if err != nil {
		return Payment{}, err
	}
	if p.Status == StatusRefunded {
		return p, nil
	}
	if err := s.provider.Refund(ctx, p.ProviderChargeID); err != nil {
		return Payment{}, fmt.Errorf("refund payment %s: %w", id, err)
	}
	return s.store.MarkRefunded(context.WithoutCancel(ctx), id)
}

// ProviderConfig forwards an admin read (change nil) or change of the
// simulated provider's behaviour; the route has checked the operator.
func (s *Service) ProviderConfig(ctx context.Context, change *ProviderSettings) (ProviderReply, error) {
	return s.provider.Admin(ctx, change)
}
