package identity

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestService_LoginAlwaysHashes shows that an unknown e-mail costs a
// password hash just like a wrong password, so the time of the answer does
// not tell whether an account exists: with the hasher's only slot taken,
// both attempts wait for it instead of answering at once.
func TestService_LoginAlwaysHashes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 0)
	f.signUp(t, "ada@example.com", "correct horse")
	f.hydra.addLogin("ch", LoginRequest{})
	f.svc.hasher = NewHasher(testParams, 1)
	f.svc.hasher.slots <- struct{}{}
	for _, email := range []string{"ada@example.com", "nobody@example.com"} {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		_, err := f.svc.Login(ctx, LoginAttempt{Challenge: "ch", Email: email, Password: "wrong horse!", ClientIP: "192.0.2.1"})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Login(%s) with the hasher busy = %v; want it to wait for a hash (context.DeadlineExceeded)", email, err)
		}
	}
	<-f.svc.hasher.slots
	if _, err := f.svc.Login(context.Background(), LoginAttempt{Challenge: "ch", Email: "nobody@example.com", Password: "wrong horse!"}); !errors.Is(err, ErrWrongCredentials) {
		t.Errorf("Login(unknown e-mail) = %v; want ErrWrongCredentials", err)
	}
}

// TestService_LoginLimits: wrong passwords from one address cannot lock the
// customer out elsewhere; the guessing address itself is stopped.
func TestService_LoginLimits(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 5)
	f.signUp(t, "grace@example.com", "correct horse battery")
	f.hydra.addLogin("ch", LoginRequest{})
	ctx := context.Background()
	attempt := func(password, ip string) error {
		_, err := f.svc.Login(ctx, LoginAttempt{Challenge: "ch", Email: "grace@example.com", Password: password, ClientIP: ip})
		return err
	}
	for i := range 5 {
		if err := attempt("wrong horse!", "198.51.100.66"); !errors.Is(err, ErrWrongCredentials) {
			t.Fatalf("guess %d = %v; want ErrWrongCredentials", i+1, err)
		}
	}
	var limited *RateLimitError
	if err := attempt("correct horse battery", "198.51.100.66"); !errors.As(err, &limited) {
		t.Errorf("the guesser's sixth attempt = %v; want a *RateLimitError", err)
	}
	if err := attempt("correct horse battery", "192.0.2.10"); err != nil {
		t.Errorf("the customer from another address after the guesses = %v; want signed in", err)
	}
	// A guesser spread over many addresses meets the account's overall budget (10 × 5).
	for i := range 50 {
		_ = attempt("wrong horse!", fmt.Sprintf("203.0.113.%d", i))
	}
	if err := attempt("wrong horse!", "203.0.113.200"); !errors.As(err, &limited) {
		t.Errorf("guess 51 from a new address = %v; want a *RateLimitError", err)
	}
}
