package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Service holds the identity use cases: sign-up, and the login and consent
// steps of Hydra's authorization flow.
type Service struct {
	log     *slog.Logger
	store   *Store
	hydra   *Hydra
	hasher  *Hasher
	limiter *LoginLimiter
	// dummyHash is verified against when the e-mail is unknown, so such an
	// attempt costs as long as a wrong password and the answer time does
	// not tell whether an account exists.
	dummyHash string

	succeeded atomic.Uint64
	refused   atomic.Uint64
	limited   atomic.Uint64
}

// NewService returns a service over its store, Hydra's admin API, a
// password hasher and the login limiter.
func NewService(log *slog.Logger, store *Store, hydra *Hydra, hasher *Hasher, limiter *LoginLimiter) *Service {
	// Hash never fails without a deadline.
	dummy, _ := hasher.Hash(context.Background(), NewBrowserID())
	return &Service{log: log, store: store, hydra: hydra, hasher: hasher, limiter: limiter, dummyHash: dummy}
}

// Ready reports whether the database answers, for /readyz.
func (s *Service) Ready(ctx context.Context) error { return s.store.Ping(ctx) }

// HydraReady reports whether Hydra's admin API answers, for /readyz:
// without it nobody can sign in.
func (s *Service) HydraReady(ctx context.Context) error { return s.hydra.Ready(ctx) }

// SignUp creates a customer account from a request already in canonical
// form (see SignUp.Normalize), sent from clientIP. A registered e-mail is
// ErrEmailTaken; an address over its sign-up allowance a *RateLimitError,
// before any hashing (each hash costs ~20 ms of CPU and 19 MiB).
func (s *Service) SignUp(ctx context.Context, clientIP string, in SignUp) (Customer, error) {
	if err := s.limiter.AllowSignUp(ctx, clientIP); err != nil {
		return Customer{}, err
	}
	hash, err := s.hasher.Hash(ctx, in.Password)
	if err != nil {
		return Customer{}, fmt.Errorf("sign up: %w", err)
	}
	c, err := s.store.Create(ctx, Customer{ID: NewCustomerID(), Email: in.Email, Name: in.Name, PasswordHash: hash})
	if err != nil {
		return Customer{}, fmt.Errorf("sign up: %w", err)
	}
	s.log.InfoContext(ctx, "customer signed up", "customer_id", c.ID)
	return c, nil
}

// LoginStep is what to do with a browser that arrived with a login
// challenge: follow RedirectTo when it is set, else show the login form.
type LoginStep struct {
	RedirectTo string
	// ClientName names the application the customer signs in to.
	ClientName string
}

// StartLogin reads the login request of challenge. When Hydra already
// knows the customer (skip), the login is accepted at once with Hydra's
// subject, as Hydra requires.
func (s *Service) StartLogin(ctx context.Context, challenge string) (LoginStep, error) {
	lr, err := s.hydra.LoginRequest(ctx, challenge)
	if err != nil {
		return LoginStep{}, err
	}
	if lr.Skip {
		to, err := s.hydra.AcceptLogin(ctx, challenge, lr.Subject)
		if err != nil {
			return LoginStep{}, err
		}
		return LoginStep{RedirectTo: to}, nil
	}
	return LoginStep{ClientName: clientName(lr.Client)}, nil
}

// LoginAttempt is one submitted login form, its CSRF token already checked.
type LoginAttempt struct {
	Challenge string
	Email     string
	Password  string
	// ClientIP is the address the attempt came from, for its rate limit.
	ClientIP string
}

// Login checks the attempt's e-mail and password and, when they match,
// accepts the login at Hydra with the customer's id as subject and returns
// where to send the browser. A wrong password and an unknown e-mail are
// both ErrWrongCredentials, after the same amount of hashing. An attempt
// over the rate limit is a *RateLimitError and checks nothing.
func (s *Service) Login(ctx context.Context, in LoginAttempt) (string, error) {
	email := LoginEmail(in.Email)
	if err := s.limiter.Allow(ctx, email, in.ClientIP); err != nil {
		var limited *RateLimitError
		if errors.As(err, &limited) {
			s.limited.Add(1)
		}
		return "", err
	}
	c, err := s.authenticate(ctx, email, in.Password)
	if err != nil {
		if errors.Is(err, ErrWrongCredentials) {
			s.refused.Add(1)
			s.limiter.Failed(ctx, email, in.ClientIP)
		}
		return "", err
	}
	to, err := s.hydra.AcceptLogin(ctx, in.Challenge, c.ID)
	if err != nil {
		return "", err
	}
	s.succeeded.Add(1)
	return to, nil
}

// authenticate returns the customer whose e-mail and password these are.
func (s *Service) authenticate(ctx context.Context, email, password string) (Customer, error) {
	if len(password) > MaxPasswordBytes || len(email) > MaxEmailLen {
		// No stored password is this long: refuse without hashing. The
		// time saved depends on the input only, not on any account.
		return Customer{}, ErrWrongCredentials
	}
	c, err := s.store.ByEmail(ctx, email)
	hash := c.PasswordHash
	switch {
	case errors.Is(err, ErrNotFound):
		hash = s.dummyHash
	case err != nil:
		return Customer{}, err
	}
	ok, err := s.hasher.Verify(ctx, hash, password)
	if err != nil {
		return Customer{}, fmt.Errorf("verify password of %s: %w", c.ID, err)
	}
	if !ok || c.ID == "" {
		return Customer{}, ErrWrongCredentials
	}
	return c, nil
}

// ConsentStep is what to do with a browser that arrived with a consent
// challenge: follow RedirectTo when it is set, else ask the customer.
type ConsentStep struct {
	RedirectTo string
	ClientName string
	Scopes     []string
}

// CustomerScopes are the only scopes a customer can grant a client: their
// own orders, and the sign-in itself. Whatever else a client asks for (a
// client that someone registered with orderflow.admin, say) is never
// granted on a customer's behalf.
var CustomerScopes = []string{"openid", "offline_access", "orders"}

// grantable is the part of requested that a customer may grant.
func grantable(requested []string) []string {
	var out []string
	for _, s := range requested {
		if slices.Contains(CustomerScopes, s) {
			out = append(out, s)
		}
	}
	return out
}

// StartConsent reads the consent request of challenge. A first-party
// client (skip_consent, such as orderflow-cli) and a consent Hydra
// remembers (skip) are granted at once: the requested audience and the
// requested scopes that a customer may grant (CustomerScopes).
func (s *Service) StartConsent(ctx context.Context, challenge string) (ConsentStep, error) {
	cr, err := s.hydra.ConsentRequest(ctx, challenge)
	if err != nil {
		return ConsentStep{}, err
	}
	if cr.Skip || cr.Client.SkipConsent {
		to, err := s.hydra.AcceptConsent(ctx, challenge, grantable(cr.RequestedScope), cr.RequestedAudience)
		if err != nil {
			return ConsentStep{}, err
		}
		return ConsentStep{RedirectTo: to}, nil
	}
	return ConsentStep{ClientName: clientName(cr.Client), Scopes: grantable(cr.RequestedScope)}, nil
}

// Consent records the customer's answer to the consent form of challenge
// (its CSRF token already checked) and returns where to send the browser.
// The granted scopes are read again from Hydra, never from the form.
func (s *Service) Consent(ctx context.Context, challenge string, grant bool) (string, error) {
	if !grant {
		return s.hydra.RejectConsent(ctx, challenge)
	}
	cr, err := s.hydra.ConsentRequest(ctx, challenge)
	if err != nil {
		return "", err
	}
	return s.hydra.AcceptConsent(ctx, challenge, grantable(cr.RequestedScope), cr.RequestedAudience)
}

// LoginStats counts login attempts by outcome since start.
type LoginStats struct {
	Succeeded uint64 // accepted at Hydra
	Refused   uint64 // wrong e-mail or password
	Limited   uint64 // over the rate limit
	FailOpen  uint64 // let through unlimited because Redis failed
}

// Stats returns the login counters (exported by Instrument).
func (s *Service) Stats() LoginStats {
	return LoginStats{
		Succeeded: s.succeeded.Load(), Refused: s.refused.Load(),
		Limited: s.limited.Load(), FailOpen: s.limiter.FailOpens(),
	}
}

// Instrument exports the login counters on m, read when scraped:
// orderflow_identity_logins_total{result="succeeded"|"refused"|"rate_limited"}
// and orderflow_ratelimit_fail_open_total, the attempts the login limiter
// let through because Redis failed.
func (s *Service) Instrument(m metric.Meter) error {
	logins, err := m.Int64ObservableCounter("orderflow.identity.logins",
		metric.WithDescription("Login attempts by result: succeeded, refused (wrong e-mail or password), rate_limited."))
	if err != nil {
		return fmt.Errorf("logins metric: %w", err)
	}
	failOpen, err := m.Int64ObservableCounter("orderflow.ratelimit.fail_open",
		metric.WithDescription("Requests let through unlimited because Redis failed."))
	if err != nil {
		return fmt.Errorf("login limiter fail-open metric: %w", err)
	}
	result := func(r string) metric.ObserveOption {
		return metric.WithAttributeSet(attribute.NewSet(attribute.String("result", r)))
	}
	succeeded, refused, limited := result("succeeded"), result("refused"), result("rate_limited")
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := s.Stats()
		o.ObserveInt64(logins, int64(st.Succeeded), succeeded)
		o.ObserveInt64(logins, int64(st.Refused), refused)
		o.ObserveInt64(logins, int64(st.Limited), limited)
		o.ObserveInt64(failOpen, int64(st.FailOpen))
		return nil
	}, logins, failOpen)
	if err != nil {
		return fmt.Errorf("login metrics callback: %w", err)
	}
	return nil
}

func clientName(c HydraClient) string {
	if c.Name != "" {
		return c.Name
	}
	return c.ID
}
