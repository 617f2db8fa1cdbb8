package identity

import (
	"context"
	"errors"
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
