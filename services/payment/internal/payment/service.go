package payment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"
)

// Provider is the external card processor as the service uses it. It is
// declared here, at the consumer, so tests can swap in a hand-written fake;
// *ProviderClient is the real one.
type Provider interface {
	Charge(ctx context.Context, req ChargeRequest) (chargeID string, err error)
	Refund(ctx context.Context, chargeID string) error
	Admin(ctx context.Context, method string, body []byte) (ProviderReply, error)
}

// Options tunes how duplicates of an in-flight request behave.
type Options struct {
	// PollInterval is how often a duplicate checks whether the first request
	// has finished (25ms when zero).
	PollInterval time.Duration
	// MaxWait bounds how long a duplicate waits before answering 409 (5s
	// when zero); set it a little above the provider timeout.
	MaxWait time.Duration
	// StaleAfter is the age after which an unfinished claim is considered
	// orphaned by a dead process and taken over (1m when zero).
	StaleAfter time.Duration
}

// Service holds the payment use cases.
type Service struct {
	log      *slog.Logger
	store    *Store
	provider Provider
	opts     Options
}

// NewService returns a service over store and provider.
func NewService(log *slog.Logger, store *Store, provider Provider, opts Options) *Service {
	if opts.PollInterval <= 0 {
		opts.PollInterval = 25 * time.Millisecond
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = 5 * time.Second
	}
	if opts.StaleAfter <= 0 {
		opts.StaleAfter = time.Minute
	}
	return &Service{log: log, store: store, provider: provider, opts: opts}
}

// Ready reports whether the database answers. The provider is deliberately
// not checked: during a provider outage payment stays in rotation and
// answers 503 fast instead of disappearing from the load balancer.
func (s *Service) Ready(ctx context.Context) error { return s.store.Ping(ctx) }

// Create captures a payment under an Idempotency-Key. The first request with
// a key claims it, charges the card and stores the outcome (201 or 402) with
// the key; later requests with the same key and body get that outcome
// replayed, duplicates that arrive while it runs wait for it, and a provider
// failure releases the key so the client may retry it. req must be
// normalized.
func (s *Service) Create(ctx context.Context, key string, req CreateRequest) (Response, error) {
	hash := req.Hash()
	waitCtx, cancel := context.WithTimeout(ctx, s.opts.MaxWait)
	defer cancel()
	for {
		c, err := s.store.Claim(ctx, key, hash, s.opts.StaleAfter)
		if err != nil {
			return Response{}, err
		}
		switch {
		case c.Owned:
			resp, err := s.capture(ctx, key, c.Token, req)
			if errors.Is(err, errClaimLost) {
				continue // someone else finished the key: replay theirs
			}
			return resp, err
		case c.Gone:
			continue
		case string(c.Hash) != string(hash):
			return Response{}, ErrKeyReused
		case c.Status != nil:
			body, err := replayBody(*c.Status, c.Body)
			if err != nil {
				return Response{}, fmt.Errorf("replay idempotency key: %w", err)
			}
			return Response{Status: *c.Status, Body: body, Replayed: true}, nil
		}
		t := time.NewTimer(s.opts.PollInterval)
		select {
		case <-waitCtx.Done():
			t.Stop()
			return Response{}, ErrInProgress
		case <-t.C:
		}
	}
}

// capture does the work of a claimed key.
func (s *Service) capture(ctx context.Context, key string, token time.Time, req CreateRequest) (Response, error) {
	chargeID, err := s.provider.Charge(ctx, ChargeRequest{
		AmountCents:    req.AmountCents,
		Currency:       req.Currency,
		Method:         req.Method,
		IdempotencyKey: key,
	})
	// Once the provider has answered, the outcome must be recorded even if
	// the client hung up meanwhile, so the rest runs without its cancellation.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()

	var decline *DeclineError
	if errors.As(err, &decline) {
		body, merr := json.Marshal(declineProblem(decline.Code))
		if merr != nil {
			return Response{}, s.release(dctx, key, token, merr)
		}
		if err := s.store.Complete(dctx, key, token, nil, http.StatusPaymentRequired, body); err != nil {
			return Response{}, s.release(dctx, key, token, err)
		}
		return Response{Status: http.StatusPaymentRequired, Body: body}, nil
	}
	if err != nil {
		return Response{}, s.release(dctx, key, token, err)
	}

	id, err := uuid.NewV7()
	if err != nil {
		return Response{}, s.release(dctx, key, token, fmt.Errorf("new payment id: %w", err))
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	p := Payment{
		ID:               id.String(),
		OrderID:          req.OrderID,
		ProviderChargeID: chargeID,
		AmountCents:      req.AmountCents,
		Currency:         req.Currency,
		Method:           req.Method,
		Status:           StatusCaptured,
		CreatedAt:        now,
		UpdatedAt:        now,
	}
	body, err := json.Marshal(toPaymentResponse(p))
	if err != nil {
		return Response{}, s.release(dctx, key, token, err)
	}
	if err := s.store.Complete(dctx, key, token, &p, http.StatusCreated, body); err != nil {
		// The charge exists at the provider but not here. Releasing the key
		// lets the client retry; the provider returns the same charge for
		// the same key, so the retry records it without charging twice.
		return Response{}, s.release(dctx, key, token, fmt.Errorf("record charge %s: %w", chargeID, err))
	}
	return Response{Status: http.StatusCreated, Body: body}, nil
}

// release frees the claim after a failure and returns cause.
func (s *Service) release(ctx context.Context, key string, token time.Time, cause error) error {
	if errors.Is(cause, errClaimLost) {
		return cause
	}
	if err := s.store.Release(ctx, key, token); err != nil {
		s.log.ErrorContext(ctx, "release idempotency key", "err", err)
	}
	return cause
}

// Get returns one payment.
func (s *Service) Get(ctx context.Context, id string) (Payment, error) {
	return s.store.Get(ctx, id)
}

// ListByOrder returns an order's payments, newest first.
func (s *Service) ListByOrder(ctx context.Context, orderID string) ([]Payment, error) {
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
	if change == nil {
		return s.provider.Admin(ctx, http.MethodGet, nil)
	}
	body, err := json.Marshal(change)
	if err != nil {
		return ProviderReply{}, fmt.Errorf("encode provider settings: %w", err)
	}
	return s.provider.Admin(ctx, http.MethodPut, body)
}
