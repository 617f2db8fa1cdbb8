package identity

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// PasswordParams are the argon2id cost parameters of new hashes. Argon2id
// rather than bcrypt: it is memory-hard, so guessing on GPUs costs memory as
// well as time, and it has no 72-byte input limit.
type PasswordParams struct {
	// Memory is in KiB.
	Memory  uint32
	Time    uint32
	Threads uint8
}

// DefaultPasswordParams returns OWASP's first argon2id recommendation
// (19 MiB, two passes, one lane). BenchmarkHasher_Hash measures them: 30 ms
// a hash on the 2-CPU development machine while other tests ran, which is
// slow for a guesser and quick for a person signing in.
func DefaultPasswordParams() PasswordParams {
	return PasswordParams{Memory: 19 * 1024, Time: 2, Threads: 1}
}

const (
	saltLen = 16
	keyLen  = 32
)

// Hasher hashes and verifies passwords with argon2id. Each hash holds
// Memory KiB while it runs, so at most a fixed number run at once: a burst
// of sign-ups or logins queues for a slot instead of exhausting the
// process's memory.
type Hasher struct {
	params PasswordParams
	slots  chan struct{}
}

// NewHasher returns a hasher writing hashes with p and running at most
// concurrency hashes at a time (at least one).
func NewHasher(p PasswordParams, concurrency int) *Hasher {
	return &Hasher{params: p, slots: make(chan struct{}, max(concurrency, 1))}
}

// Hash returns password's argon2id hash in the PHC string format,
// "$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>", base64 without padding,
// so the parameters travel with each hash and can be raised later.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	salt := make([]byte, saltLen)
	_, _ = rand.Read(salt) // crypto/rand.Read never fails
	key, err := h.derive(ctx, password, salt, h.params, keyLen)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version,
		h.params.Memory, h.params.Time, h.params.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// Verify reports whether password matches encoded, a hash written by Hash
// (with any parameters). The comparison takes constant time.
func (h *Hasher) Verify(ctx context.Context, encoded, password string) (bool, error) {
	p, salt, want, err := parseHash(encoded)
	if err != nil {
		return false, err
	}
	got, err := h.derive(ctx, password, salt, p, uint32(len(want)))
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// derive runs argon2id in one of the hasher's slots, waiting for a slot no
// longer than ctx allows.
func (h *Hasher) derive(ctx context.Context, password string, salt []byte, p PasswordParams, n uint32) ([]byte, error) {
	select {
	case h.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("wait to hash a password: %w", ctx.Err())
	}
	defer func() { <-h.slots }()
	return argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, n), nil
}

// parseHash splits a PHC argon2id string. The parameters are bounded, so a
// corrupted row cannot make one verification allocate gigabytes.
func parseHash(encoded string) (PasswordParams, []byte, []byte, error) {
	var p PasswordParams
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, nil, nil, ErrBadPasswordHash
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return p, nil, nil, ErrBadPasswordHash
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil {
		return p, nil, nil, ErrBadPasswordHash
	}
	if p.Memory < 8 || p.Memory > 1<<20 || p.Time < 1 || p.Time > 64 || p.Threads < 1 || p.Threads > 16 {
		return p, nil, nil, ErrBadPasswordHash
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil || len(salt) < 8 || len(salt) > 64 {
		return p, nil, nil, ErrBadPasswordHash
	}
	key, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(key) < 16 || len(key) > 128 {
		return p, nil, nil, ErrBadPasswordHash
	}
	return p, salt, key, nil
}
