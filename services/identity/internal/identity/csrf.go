package identity

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

// MinCSRFKeyLen is the shortest IDENTITY_CSRF_KEY accepted.
const MinCSRFKeyLen = 32

// Form purposes, so a login form's token cannot be replayed on the consent
// form of the same flow.
const (
	PurposeLogin   = "login"
	PurposeConsent = "consent"
)

// browserIDLen is the length of a browser id: 32 random bytes in unpadded
// base64url.
const browserIDLen = 43

// CSRF issues and checks the anti-forgery tokens of the login and consent
// forms without storing anything. A token is HMAC-SHA256, under the
// server's key, of the form's purpose, its challenge and a random browser
// id that lives in an HttpOnly, SameSite=Lax cookie (double submit). A page
// on another site can neither read the cookie nor compute the token, and a
// token copied from another browser's form does not match this browser's
// cookie. Every replica with the same key accepts the same tokens, so no
// session store is needed behind the load balancer.
type CSRF struct {
	key []byte
}

// NewCSRF returns a CSRF over key, which must have at least MinCSRFKeyLen
// characters.
func NewCSRF(key string) (*CSRF, error) {
	if len(key) < MinCSRFKeyLen {
		return nil, fmt.Errorf("csrf key must have at least %d characters", MinCSRFKeyLen)
	}
	return &CSRF{key: []byte(key)}, nil
}

// Token returns the token of the form for purpose and challenge in the
// browser whose id is browser.
func (c *CSRF) Token(purpose, challenge, browser string) string {
	return base64.RawURLEncoding.EncodeToString(c.mac(purpose, challenge, browser))
}

// Valid reports whether token is the one Token gives for purpose,
// challenge and browser. A missing or malformed browser id is never valid.
func (c *CSRF) Valid(token, purpose, challenge, browser string) bool {
	if !ValidBrowserID(browser) || challenge == "" {
		return false
	}
	got, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return false
	}
	return hmac.Equal(got, c.mac(purpose, challenge, browser))
}

func (c *CSRF) mac(purpose, challenge, browser string) []byte {
	m := hmac.New(sha256.New, c.key)
	// Purpose and browser id never contain NUL, so the fields cannot run
	// into each other; the challenge, the only free-form part, is last.
	m.Write([]byte(purpose + "\x00" + browser + "\x00" + challenge))
	return m.Sum(nil)
}

// NewBrowserID returns a fresh random browser id for the CSRF cookie.
func NewBrowserID() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ValidBrowserID reports whether s has the form NewBrowserID gives.
func ValidBrowserID(s string) bool {
	if len(s) != browserIDLen {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil
}
