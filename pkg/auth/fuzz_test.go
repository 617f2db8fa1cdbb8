package auth_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/orderflow/orderflow/pkg/auth"
)

// localIssuer serves a JWKS of one fresh RSA key, for tests that need no
// Hydra: the fuzz target and the benchmark's signed tokens.
func localIssuer(tb testing.TB) (*rsa.PrivateKey, string) {
	return localIssuerBits(tb, 2048)
}

// localIssuerBits is localIssuer with a key of bits.
func localIssuerBits(tb testing.TB, bits int) (*rsa.PrivateKey, string) {
	tb.Helper()
	key, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		tb.Fatal(err)
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(set)
	}))
	tb.Cleanup(srv.Close)
	return key, srv.URL + "/"
}

func signRS256(tb testing.TB, key *rsa.PrivateKey, claims map[string]any) string {
	tb.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		tb.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	obj, err := s.Sign(b)
	if err != nil {
		tb.Fatal(err)
	}
	tok, _ := obj.CompactSerialize()
	return tok
}

// FuzzAuthenticate: no Authorization header value, however made, gets a
// request past Authenticate with a caller unless it is a token the issuer
// signed; nothing panics or answers 5xx.
func FuzzAuthenticate(f *testing.F) {
	key, issuer := localIssuer(f)
	v, err := auth.NewVerifier(auth.Config{Issuer: issuer, JWKSURL: issuer, Audience: "orderflow", CacheTTL: time.Minute}, nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	good := signRS256(f, key, map[string]any{"iss": issuer, "aud": []string{"orderflow"}, "sub": "cus_1",
		"exp": time.Now().Add(time.Hour).Unix(), "scp": []string{"orders"}})
	for _, seed := range []string{"", "Bearer", "Bearer ", "Bearer " + good, "bearer " + good, "Bearer " + good + "x",
		"Bearer a.b.c", "Bearer ....", "Basic dXNlcjpwYXNz", "Bearer eyJhbGciOiJub25lIn0.e30.", "Bearer \x00", "Bearer " + good[:len(good)/2]} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, header string) {
		var caller *auth.Principal
		h := v.Authenticate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if p, ok := auth.FromContext(r.Context()); ok {
				caller = &p
			}
		}))
		req := httptest.NewRequestWithContext(context.Background(), http.MethodGet, "/", nil)
		req.Header["Authorization"] = []string{header}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch {
		case rec.Code >= 500:
			t.Fatalf("Authorization %q answered %d", header, rec.Code)
		case caller != nil && header != "Bearer "+good && header != "bearer "+good && header != "Bearer  "+good:
			t.Fatalf("Authorization %q authenticated as %+v", header, *caller)
		case header != "" && caller == nil && rec.Code != http.StatusUnauthorized:
			t.Fatalf("Authorization %q = %d; want 401", header, rec.Code)
		}
	})
}

// BenchmarkVerify is the cost of checking a token on every request: the
// RS256 signature and claims each time (cache off) against the decision
// cache's hit, with a 2048-bit key and with a 4096-bit one (Hydra v2.3.0
// signs its access tokens with RSA 4096: the cost of a check grows about
// tenfold with it).
func BenchmarkVerify(b *testing.B) {
	for _, bits := range []int{2048, 4096} {
		key, issuer := localIssuerBits(b, bits)
		tok := signRS256(b, key, map[string]any{"iss": issuer, "aud": []string{"orderflow"}, "sub": "cus_1",
			"exp": time.Now().Add(time.Hour).Unix(), "scp": []string{"orders"}})
		for _, bc := range []struct {
			name string
			ttl  time.Duration
		}{{"signature", 0}, {"cached", 30 * time.Second}} {
			b.Run(fmt.Sprintf("rsa%d/%s", bits, bc.name), func(b *testing.B) {
				v, err := auth.NewVerifier(auth.Config{Issuer: issuer, JWKSURL: issuer, Audience: "orderflow", CacheTTL: bc.ttl}, nil, nil)
				if err != nil {
					b.Fatal(err)
				}
				ctx := context.Background()
				if _, err := v.Verify(ctx, tok); err != nil { // fetch the JWKS once
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if _, err := v.Verify(ctx, tok); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
