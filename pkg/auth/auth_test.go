package auth_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/orderflow/orderflow/pkg/auth"
	"github.com/orderflow/orderflow/pkg/authtest"
)

// hydraKey returns the key id and public key Hydra signs access tokens with.
func hydraKey(t *testing.T, h *authtest.Hydra) (string, *rsa.PublicKey) {
	t.Helper()
	resp, err := http.Get(h.PublicURL + ".well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	for _, k := range set.Keys {
		if pub, ok := k.Key.(*rsa.PublicKey); ok && k.Use == "sig" {
			return k.KeyID, pub
		}
	}
	t.Fatal("no RSA signing key in Hydra's JWKS")
	return "", nil
}

// sign makes a JWT of claims signed with key under alg, naming kid.
func sign(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func payloadOf(t *testing.T, token string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestVerifier_Hydra checks real tokens from a real Hydra and every kind
// of forged or misdirected one.
func TestVerifier_Hydra(t *testing.T) {
	h := authtest.Start(t, authtest.Options{})
	ctx := context.Background()
	v, err := auth.NewVerifier(auth.Config{Issuer: h.Issuer, Audience: "orderflow"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	customer, err := h.CustomerToken(ctx, "cus_alice")
	if err != nil {
		t.Fatal(err)
	}
	admin, err := h.AdminToken(ctx)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("customer token", func(t *testing.T) {
		p, err := v.Verify(ctx, customer)
		if err != nil {
			t.Fatalf("Verify(customer) = %v", err)
		}
		if p.Subject != "cus_alice" || p.ClientID != "orderflow-cli" || !p.Has(auth.ScopeOrders) || p.IsAdmin() {
			t.Errorf("Verify(customer) = %+v; want cus_alice via orderflow-cli with scope orders only", p)
		}
	})
	t.Run("admin token", func(t *testing.T) {
		p, err := v.Verify(ctx, admin)
		if err != nil || p.Subject != "orderflow-admin" || !p.IsAdmin() {
			t.Errorf("Verify(admin) = %+v, %v; want orderflow-admin with orderflow.admin", p, err)
		}
	})

	kid, pub := hydraKey(t, h)
	claims := payloadOf(t, customer)
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(pub)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT","kid":"` + kid + `"}`))
	body := base64.RawURLEncoding.EncodeToString(must(json.Marshal(claims)))
	withClaim := func(k string, val any) map[string]any {
		c := map[string]any{}
		for kk, vv := range claims {
			c[kk] = vv
		}
		c[k] = val
		return c
	}
	forged := []struct {
		name, token string
	}{
		{"empty", ""},
		{"garbage", "not-a-jwt"},
		{"truncated signature", customer[:len(customer)-10]},
		{"payload swapped", strings.Join([]string{strings.Split(customer, ".")[0], base64.RawURLEncoding.EncodeToString(must(json.Marshal(withClaim("sub", "cus_mallory")))), strings.Split(customer, ".")[2]}, ".")},
		{"alg none", header + "." + body + "."},
		{"signed by another key, Hydra's kid", sign(t, jose.RS256, other, kid, claims)},
		{"HS256 with Hydra's public key", sign(t, jose.HS256, pubPEM, kid, claims)},
		{"HS256 with the DER public key", sign(t, jose.HS256, pubDER, kid, claims)},
	}
	for _, tc := range forged {
		t.Run(tc.name, func(t *testing.T) {
			if p, err := v.Verify(ctx, tc.token); !errors.Is(err, auth.ErrInvalidToken) {
				t.Errorf("Verify(%s) = %+v, %v; want ErrInvalidToken", tc.name, p, err)
			}
		})
	}

	t.Run("another issuer", func(t *testing.T) {
		// Same keys, but the verifier expects a different issuer: iss must match exactly.
		w, _ := auth.NewVerifier(auth.Config{Issuer: "http://127.0.0.1:1/", JWKSURL: h.PublicURL + ".well-known/jwks.json", Audience: "orderflow"}, nil, nil)
		if _, err := w.Verify(ctx, customer); !errors.Is(err, auth.ErrInvalidToken) {
			t.Errorf("Verify(token of another issuer) = %v; want ErrInvalidToken", err)
		}
		second := authtest.Start(t, authtest.Options{})
		tok, err := second.CustomerToken(ctx, "cus_alice")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(ctx, tok); !errors.Is(err, auth.ErrInvalidToken) {
			t.Errorf("Verify(token from a second Hydra) = %v; want ErrInvalidToken", err)
		}
	})
	t.Run("another audience", func(t *testing.T) {
		w, _ := auth.NewVerifier(auth.Config{Issuer: h.Issuer, Audience: "billing"}, nil, nil)
		if _, err := w.Verify(ctx, customer); !errors.Is(err, auth.ErrInvalidToken) {
			t.Errorf("Verify(token for orderflow) with audience billing = %v; want ErrInvalidToken", err)
		}
	})
}

func TestVerifier_Expired(t *testing.T) {
	// Long enough to be fresh when first checked on a busy machine (the
	// sign-in itself takes a while), short enough to wait out.
	h := authtest.Start(t, authtest.Options{AccessTokenTTL: 6 * time.Second})
	ctx := context.Background()
	v, _ := auth.NewVerifier(auth.Config{Issuer: h.Issuer, Audience: "orderflow", CacheTTL: time.Minute}, nil, nil)
	tok, err := h.CustomerToken(ctx, "cus_bob")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatalf("Verify(fresh token) = %v", err)
	}
	// The cached decision must not outlive the token (go-oidc allows no
	// leeway): wait until just past its exp.
	time.Sleep(time.Until(tokenExpiry(t, tok)) + 500*time.Millisecond)
	if _, err := v.Verify(ctx, tok); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("Verify(expired token) = %v; want ErrInvalidToken", err)
	}
}

// TestMiddleware drives Authenticate and Require with real tokens.
func TestMiddleware(t *testing.T) {
	h := authtest.Start(t, authtest.Options{})
	ctx := context.Background()
	v, _ := auth.NewVerifier(auth.Config{Issuer: h.Issuer, Audience: "orderflow", CacheTTL: 30 * time.Second}, nil, nil)
	customer, err := h.CustomerToken(ctx, "cus_carol")
	if err != nil {
		t.Fatal(err)
	}
	admin, err := h.AdminToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var hits int
	handler := v.Authenticate(auth.Require(auth.ScopeAdmin)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		p, _ := auth.FromContext(r.Context())
		w.Write([]byte(p.Subject))
	})))
	tests := []struct {
		name, header string
		want         int
		challenge    string
		code         string
	}{
		{"no token", "", 401, `Bearer realm="orderflow"`, "unauthorized"},
		{"not bearer", "Basic YWxhZGRpbjpvcGVuc2VzYW1l", 401, `Bearer realm="orderflow", error="invalid_token"`, "unauthorized"},
		{"bad token", "Bearer abc.def.ghi", 401, `Bearer realm="orderflow", error="invalid_token"`, "unauthorized"},
		{"oversized", "Bearer " + strings.Repeat("a", 9000), 401, `Bearer realm="orderflow", error="invalid_token"`, "unauthorized"},
		{"customer without the scope", "Bearer " + customer, 403, `Bearer error="insufficient_scope", scope="orderflow.admin"`, "insufficient_scope"},
		{"admin", "Bearer " + admin, 200, "", ""},
		{"admin, lower-case scheme", "bearer " + admin, 200, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := hits
			req := httptest.NewRequest(http.MethodPut, "/admin/x", nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("status = %d; want %d (%s)", rec.Code, tc.want, rec.Body)
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != tc.challenge {
				t.Errorf("WWW-Authenticate = %q; want %q", got, tc.challenge)
			}
			if tc.want != 200 {
				if hits != before {
					t.Error("a refused request reached the handler")
				}
				var p struct{ Code string }
				if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Code != tc.code {
					t.Errorf("body %s; want a problem with code %s", rec.Body, tc.code)
				}
				if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
					t.Errorf("Content-Type = %q; want application/problem+json", ct)
				}
			}
		})
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// tokenExpiry reads a token's exp claim, unverified: the test only needs to
// know when to look again.
func tokenExpiry(t *testing.T, token string) time.Time {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts; want 3", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Exp == 0 {
		t.Fatalf("token claims %s: %v", payload, err)
	}
	return time.Unix(claims.Exp, 0)
}
