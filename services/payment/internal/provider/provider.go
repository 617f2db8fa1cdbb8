// Package provider simulates an external card processor that the payment
// service reaches over a real HTTP hop. Its latency, error rate and outages
// are settable at run time, so load tests and fault drills can show what
// timeouts, retries and idempotency keys buy when a third party misbehaves.
// Like a real processor it deduplicates charges by idempotency key, lets
// the merchant look a charge up by that key, and keeps its ledger (charges
// and refunds) in its own database, so a restart loses nothing.
//
// It lives under services/payment/internal so that both the provider process
// (services/payment/provider) and the payment service's tests, which run the
// real handler with httptest, can import it.
package provider

import (
	"context"
	"crypto/rand"
	"errors"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"time"
)

// Test payment methods with a fixed outcome. Any other method succeeds.
const (
	MethodDeclined          = "pm_card_declined"
	MethodInsufficientFunds = "pm_card_insufficient_funds"
)

// Charge statuses.
const (
	StatusSucceeded = "succeeded"
	StatusRefunded  = "refunded"
)

// Decline codes, as a real processor reports them.
const (
	CodeCardDeclined      = "card_declined"
	CodeInsufficientFunds = "insufficient_funds"
)

// Limits of the run-time configuration.
const (
	MaxLatencyMS = 60000
	MaxKeyLen    = 255
)

var (
	// ErrNotFound means no charge has the id.
	ErrNotFound = errors.New("charge not found")
	// ErrOutage is the simulated outage: the provider answers 503 at once.
	ErrOutage = errors.New("provider outage")
	// ErrInjected is a simulated internal error, drawn with the error rate.
	ErrInjected = errors.New("injected provider error")
	// ErrKeyReused means an idempotency key came back with other charge
	// parameters; a real processor refuses that rather than guess.
	ErrKeyReused = errors.New("idempotency key reused with different parameters")
)

// DeclinedError is a charge the card issuer refused, with the issuer's
// DeclineCode. Nothing is charged.
type DeclinedError struct {
	DeclineCode string
}

// Error describes the decline.
func (e *DeclinedError) Error() string { return "charge declined: " + e.DeclineCode }

// Config is the simulated behaviour. The zero value is a perfect provider.
type Config struct {
	LatencyMS int
	ErrorRate float64
	Outage    bool
}

// Validate returns a field→problem map, empty when c is acceptable.
func (c Config) Validate() map[string]string {
	problems := map[string]string{}
	if c.LatencyMS < 0 || c.LatencyMS > MaxLatencyMS {
		problems["latency_ms"] = "must be between 0 and 60000"
	}
	if !(c.ErrorRate >= 0 && c.ErrorRate <= 1) { // also rejects NaN
		problems["error_rate"] = "must be between 0.0 and 1.0"
	}
	return problems
}

// Patch changes some settings and keeps the rest; a nil field is unchanged.
// It lets an operator flip the outage without resetting the latency.
type Patch struct {
	LatencyMS *int
	ErrorRate *float64
	Outage    *bool
}

// Apply returns c with p's fields set.
func (p Patch) Apply(c Config) Config {
	if p.LatencyMS != nil {
		c.LatencyMS = *p.LatencyMS
	}
	if p.ErrorRate != nil {
		c.ErrorRate = *p.ErrorRate
	}
	if p.Outage != nil {
		c.Outage = *p.Outage
	}
	return c
}

// ChargeRequest asks for a card charge. IdempotencyKey (optional) makes a
// repeat return the first charge instead of charging again.
type ChargeRequest struct {
	AmountCents    int64
	Currency       string
	Method         string
	IdempotencyKey string
}

// Charge is a captured (and maybe refunded) card payment.
type Charge struct {
	ID             string
	IdempotencyKey string // empty when the charge was made without one
	Status         string
	AmountCents    int64
	Currency       string
	Method         string
}

// Totals sums the provider's ledger: what it captured and what it refunded,
// in cents of any currency. Money is conserved when captured − refunded
// equals what the merchant kept.
type Totals struct {
	Charges       int64
	CapturedCents int64
	Refunds       int64
	RefundedCents int64
}

// Simulator is the provider: its charges and refunds in a Store, and the
// current fault configuration in memory (an operator's setting, lost on a
// restart like any process flag). It is safe for concurrent use.
type Simulator struct {
	store *Store
	mu    sync.Mutex
	cfg   Config
	draw  func() float64
}

// NewSimulator returns a simulator with cfg, which must be valid, keeping
// its ledger in store.
func NewSimulator(cfg Config, store *Store) *Simulator {
	return &Simulator{store: store, cfg: cfg, draw: mrand.Float64}
}

// Config returns the current configuration.
func (s *Simulator) Config() Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// Update applies p under the lock, so two concurrent patches never lose one
// another's fields, and returns the new configuration. An invalid result
// changes nothing and returns the problems.
func (s *Simulator) Update(p Patch) (Config, map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := p.Apply(s.cfg)
	if problems := next.Validate(); len(problems) > 0 {
		return s.cfg, problems
	}
	s.cfg = next
	return next, nil
}

// Fault plays the configured misbehaviour before a call does any work: an
// outage fails at once, latency sleeps (and gives up without side effects
// when ctx ends, like a processor whose client hung up), and the error rate
// fails a random share of calls.
func (s *Simulator) Fault(ctx context.Context) error {
	cfg := s.Config()
	if cfg.Outage {
		return ErrOutage
	}
	if cfg.LatencyMS > 0 {
		t := time.NewTimer(time.Duration(cfg.LatencyMS) * time.Millisecond)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	if cfg.ErrorRate > 0 && s.draw() < cfg.ErrorRate {
		return ErrInjected
	}
	return nil
}

// LookupFault plays the configured outage and error rate for a look-up of
// a stored charge, but not the latency: the latency models the card
// network's round trip of a charge or refund, which a look-up does not make.
func (s *Simulator) LookupFault() error {
	cfg := s.Config()
	if cfg.Outage {
		return ErrOutage
	}
	if cfg.ErrorRate > 0 && s.draw() < cfg.ErrorRate {
		return ErrInjected
	}
	return nil
}

// Charge captures a payment. A repeated idempotency key returns the first
// charge (replayed true) instead of charging again, also across restarts;
// declines charge nothing and are not remembered, as with a real processor.
func (s *Simulator) Charge(ctx context.Context, req ChargeRequest) (c Charge, replayed bool, err error) {
	switch req.Method {
	case MethodDeclined:
		return Charge{}, false, &DeclinedError{DeclineCode: CodeCardDeclined}
	case MethodInsufficientFunds:
		return Charge{}, false, &DeclinedError{DeclineCode: CodeInsufficientFunds}
	}
	return s.store.Insert(ctx, "ch_"+strings.ToLower(rand.Text()), req)
}

// Refund refunds a charge in full; refunding twice is harmless.
func (s *Simulator) Refund(ctx context.Context, id string) (Charge, error) {
	return s.store.Refund(ctx, id, "re_"+strings.ToLower(rand.Text()))
}

// Get returns one charge.
func (s *Simulator) Get(ctx context.Context, id string) (Charge, error) {
	return s.store.Get(ctx, id)
}

// ByKey returns the charge made with an idempotency key, or ErrNotFound:
// how a merchant whose answer got lost learns whether it was charged.
func (s *Simulator) ByKey(ctx context.Context, key string) (Charge, error) {
	return s.store.ByKey(ctx, key)
}

// Totals sums the charges and refunds ever made.
func (s *Simulator) Totals(ctx context.Context) (Totals, error) {
	return s.store.Totals(ctx)
}
