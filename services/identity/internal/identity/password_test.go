package identity

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// testParams keep the tests that hash many passwords quick; the format
// and the code path are those of DefaultPasswordParams.
var testParams = PasswordParams{Memory: 64, Time: 1, Threads: 1}

func TestHasher_HashVerify(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := NewHasher(DefaultPasswordParams(), 2)
	hash, err := h.Hash(ctx, "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(hash, "$argon2id$v=19$m=19456,t=2,p=1$") || strings.Count(hash, "$") != 5 {
		t.Errorf("Hash = %q; want a PHC argon2id string with the default parameters", hash)
	}
	again, _ := h.Hash(ctx, "correct horse battery")
	if again == hash {
		t.Error("two hashes of one password are equal; want a fresh salt each time")
	}
	tests := []struct {
		password string
		want     bool
	}{
		{"correct horse battery", true},
		{"correct horse batterY", false},
		{"correct horse battery ", false},
		{"", false},
	}
	for _, tt := range tests {
		ok, err := h.Verify(ctx, hash, tt.password)
		if err != nil || ok != tt.want {
			t.Errorf("Verify(%q) = %v, %v; want %v", tt.password, ok, err, tt.want)
		}
	}
}

func TestHasher_VerifyOtherParams(t *testing.T) {
	t.Parallel()
	// A hash written with older (cheaper) parameters still verifies after
	// the defaults were raised: the parameters travel with the hash.
	ctx := context.Background()
	old, err := NewHasher(testParams, 1).Hash(ctx, "long enough password")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := NewHasher(DefaultPasswordParams(), 1).Verify(ctx, old, "long enough password"); !ok || err != nil {
		t.Errorf("Verify(hash with other parameters) = %v, %v; want true", ok, err)
	}
}

func TestHasher_VerifyMalformed(t *testing.T) {
	t.Parallel()
	h := NewHasher(testParams, 1)
	good, _ := h.Hash(context.Background(), "long enough password")
	parts := strings.Split(good, "$")
	tests := map[string]string{
		"empty":          "",
		"bcrypt":         "$2a$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234",
		"argon2i":        strings.Replace(good, "argon2id", "argon2i", 1),
		"other version":  strings.Replace(good, "v=19", "v=16", 1),
		"huge memory":    strings.Replace(good, parts[3], "m=4194304,t=1,p=1", 1),
		"zero time":      strings.Replace(good, parts[3], "m=64,t=0,p=1", 1),
		"bad salt":       strings.Replace(good, parts[4], "!!!", 1),
		"short key":      strings.Replace(good, parts[5], "AAAA", 1),
		"missing a part": strings.Join(parts[:5], "$"),
	}
	for name, hash := range tests {
		if ok, err := h.Verify(context.Background(), hash, "long enough password"); ok || !errors.Is(err, ErrBadPasswordHash) {
			t.Errorf("%s: Verify(%q) = %v, %v; want ErrBadPasswordHash", name, hash, ok, err)
		}
	}
}

func TestHasher_WaitsForASlot(t *testing.T) {
	t.Parallel()
	h := NewHasher(testParams, 1)
	h.slots <- struct{}{} // the only slot is taken
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Hash(ctx, "long enough password"); !errors.Is(err, context.Canceled) {
		t.Errorf("Hash with every slot busy and ctx done = %v; want context.Canceled", err)
	}
}

// BenchmarkHasher_Hash measures DefaultPasswordParams on this machine; it
// should take 10-30 ms an operation. Run it with
// go test -run '^$' -bench Hasher ./services/identity/internal/identity
func BenchmarkHasher_Hash(b *testing.B) {
	h := NewHasher(DefaultPasswordParams(), 1)
	ctx := context.Background()
	for b.Loop() {
		if _, err := h.Hash(ctx, "correct horse battery"); err != nil {
			b.Fatal(err)
		}
	}
}
