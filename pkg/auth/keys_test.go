package auth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// issuer is a JWKS endpoint whose keys a test can rotate or take away.
type issuer struct {
	mu    sync.Mutex
	keys  map[string]*rsa.PrivateKey
	down  bool
	calls atomic.Int32
	srv   *httptest.Server
}

func newIssuer(t *testing.T, kids ...string) *issuer {
	t.Helper()
	is := &issuer{keys: map[string]*rsa.PrivateKey{}}
	for _, kid := range kids {
		is.add(t, kid)
	}
	is.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		is.calls.Add(1)
		is.mu.Lock()
		defer is.mu.Unlock()
		if is.down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		var set jose.JSONWebKeySet
		for kid, k := range is.keys {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Algorithm: "RS256", Use: "sig"})
		}
		_ = json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(is.srv.Close)
	return is
}

func (is *issuer) add(t *testing.T, kid string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	is.mu.Lock()
	is.keys[kid] = k
	is.mu.Unlock()
}

func (is *issuer) sign(t *testing.T, kid string, key *rsa.PrivateKey) string {
	t.Helper()
	if key == nil {
		is.mu.Lock()
		key = is.keys[kid]
		is.mu.Unlock()
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Sign([]byte(`{"sub":"cus_1"}`))
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := obj.CompactSerialize()
	return tok
}

func TestKeySet(t *testing.T) {
	ctx := context.Background()
	is := newIssuer(t, "k1")
	clock := time.Unix(1_800_000_000, 0)
	ks := newKeySet(is.srv.URL, nil)
	ks.now = func() time.Time { return clock }

	if _, err := ks.VerifySignature(ctx, is.sign(t, "k1", nil)); err != nil {
		t.Fatalf("VerifySignature(token of k1) = %v", err)
	}
	// Forged tokens, with the known key id and with unknown ones, cost at
	// most one fetch per minRefresh, however many arrive.
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	for i := range 50 {
		kid := "k1"
		if i%2 == 1 {
			kid = "forged"
		}
		if _, err := ks.VerifySignature(ctx, is.sign(t, kid, other)); err == nil {
			t.Fatal("a token signed by another key verified")
		}
	}
	if got := is.calls.Load(); got > 2 {
		t.Errorf("JWKS fetches after one good and 50 forged tokens = %d; want at most 2", got)
	}

	// A rotated key is fetched once minRefresh has passed.
	is.add(t, "k2")
	clock = clock.Add(11 * time.Second)
	before := is.calls.Load()
	if _, err := ks.VerifySignature(ctx, is.sign(t, "k2", nil)); err != nil {
		t.Fatalf("VerifySignature(token of the new key k2) = %v", err)
	}
	if got := is.calls.Load() - before; got != 1 {
		t.Errorf("fetches for the new key = %d; want 1", got)
	}

	// The provider away: the keys already held keep working.
	is.mu.Lock()
	is.down = true
	is.mu.Unlock()
	clock = clock.Add(2 * time.Hour)
	if _, err := ks.VerifySignature(ctx, is.sign(t, "k1", nil)); err != nil {
		t.Errorf("VerifySignature with the provider down = %v; want the held keys to verify", err)
	}
}

func TestKeySet_NoKeysYet(t *testing.T) {
	is := newIssuer(t, "k1")
	is.down = true
	ks := newKeySet(is.srv.URL, nil)
	if _, err := ks.VerifySignature(context.Background(), is.sign(t, "k1", nil)); err == nil {
		t.Error("VerifySignature without any keys = nil error")
	}
}
