// Package provider simulates an external card processor that the payment
// service reaches over a real HTTP hop. Its latency, error rate and outages
// are settable at run time, so load tests and fault drills can show what
// timeouts, retries and idempotency keys buy when a third party misbehaves.
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

// DeclineError is a charge the card issuer refused. Nothing is charged.
type DeclineError struct{ Code string }

func (e *DeclineError) Error() string { return "charge declined: " + e.Code }

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

// ChargeRequest asks for a card charge.
type ChargeRequest struct {
	AmountCents    int64
	Currency       string
	Method         string
	IdempotencyKey string
}

// Charge is a captured (and maybe refunded) card payment.
type Charge struct {
	ID          string
	Status      string
	AmountCents int64
	Currency    string
	Method      string
	key         string
}

// Simulator holds the charges in memory and the current configuration. It is
// safe for concurrent use.
type Simulator struct {
	mu      sync.Mutex
	cfg     Config
	charges map[string]*Charge
	byKey   map[string]string
	draw    func() float64
}

// NewSimulator returns a simulator with cfg, which must be valid.
func NewSimulator(cfg Config) *Simulator {
	return &Simulator{
		cfg:     cfg,
		charges: map[string]*Charge{},
		byKey:   map[string]string{},
		draw:    mrand.Float64,
	}
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

// Charge captures a payment. A repeated idempotency key returns the first
// charge instead of charging again; declines charge nothing and are not
// remembered, as with a real processor.
func (s *Simulator) Charge(req ChargeRequest) (Charge, error) {
	switch req.Method {
	case MethodDeclined:
		return Charge{}, &DeclineError{Code: CodeCardDeclined}
	case MethodInsufficientFunds:
		return Charge{}, &DeclineError{Code: CodeInsufficientFunds}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.IdempotencyKey != "" {
		if id, ok := s.byKey[req.IdempotencyKey]; ok {
			c := s.charges[id]
			if c.AmountCents != req.AmountCents || c.Currency != req.Currency || c.Method != req.Method {
				return Charge{}, ErrKeyReused
			}
			return *c, nil
		}
	}
	c := &Charge{
		ID:          "ch_" + strings.ToLower(rand.Text()),
		Status:      StatusSucceeded,
		AmountCents: req.AmountCents,
		Currency:    req.Currency,
		Method:      req.Method,
		key:         req.IdempotencyKey,
	}
	s.charges[c.ID] = c
	if c.key != "" {
		s.byKey[c.key] = c.ID
	}
	return *c, nil
}

// Refund marks a charge refunded; refunding twice is harmless.
func (s *Simulator) Refund(id string) (Charge, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.charges[id]
	if !ok {
		return Charge{}, ErrNotFound
	}
	c.Status = StatusRefunded
	return *c, nil
}

// Get returns one charge.
func (s *Simulator) Get(id string) (Charge, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.charges[id]
	if !ok {
		return Charge{}, ErrNotFound
	}
	return *c, nil
}

// Len returns the number of charges ever captured, so tests can prove that
// retries and duplicates never charged twice.
func (s *Simulator) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.charges)
}
