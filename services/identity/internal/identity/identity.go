// Package identity is the login and consent app of Orderflow's OpenID
// Connect provider, Ory Hydra. Hydra keeps no users: when a client starts an
// authorization, Hydra sends the browser here with a login challenge; this
// package checks the customer's e-mail and password against its own accounts
// and tells Hydra's admin API who signed in, so the customer's id becomes the
// access token's sub. It also owns sign-up (POST /v1/customers) and the
// consent step, which the first-party client skips.
package identity

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits of sign-up input.
const (
	// MinPasswordLen is the fewest characters a password may have.
	MinPasswordLen = 10
	// MaxPasswordBytes caps a password: hashing megabytes would be a cheap
	// way to burn the server's CPU.
	MaxPasswordBytes = 1024
	// MaxEmailLen is the longest address SMTP can carry (RFC 5321 path limit).
	MaxEmailLen = 254
	// MaxNameLen is the longest customer name, in characters.
	MaxNameLen = 200
)

var (
	// ErrEmailTaken means another customer already has the e-mail address.
	ErrEmailTaken = errors.New("e-mail address already registered")
	// ErrNotFound means no customer has the e-mail address or id.
	ErrNotFound = errors.New("customer not found")
	// ErrWrongCredentials is every failed password check: unknown e-mail and
	// wrong password are the same error, so a caller cannot tell which.
	ErrWrongCredentials = errors.New("wrong e-mail or password")
	// ErrChallengeNotFound means Hydra knows no such login or consent
	// challenge (never issued, malformed or expired).
	ErrChallengeNotFound = errors.New("login or consent challenge not found")
	// ErrHydraUnavailable means Hydra's admin API did not answer properly.
	ErrHydraUnavailable = errors.New("hydra unavailable")
	// ErrBadPasswordHash means a stored hash is not one this package wrote.
	ErrBadPasswordHash = errors.New("malformed password hash")
)

// HandledError is Hydra's answer for a challenge that was already accepted
// or rejected: the browser is sent on to RedirectTo, as if the first answer
// had just been given (a double submit or the back button).
type HandledError struct{ RedirectTo string }

// Error describes the refusal.
// Error says the challenge was already answered.
func (e *HandledError) Error() string { return "challenge already handled" }

// RateLimitError refuses a login attempt over the allowance of its account
// or client address.
type RateLimitError struct {
	// RetryAfter is when the next attempt may be allowed.
	RetryAfter time.Duration
}

// Error describes the refusal.
func (e *RateLimitError) Error() string {
	return fmt.Sprintf("too many login attempts; retry after %s", e.RetryAfter)
}

// Customer is a customer account.
type Customer struct {
	ID           string
	Email        string
	Name         string
	PasswordHash string
	CreatedAt    time.Time
}

// SignUp asks to create a customer account.
type SignUp struct {
	Email    string
	Password string
	Name     string
}

// Normalize returns s in canonical form (lower-case e-mail, trimmed name)
// and a field→problem map, empty when s is valid. The password is never
// changed: spaces in it are the customer's choice.
func (s SignUp) Normalize() (SignUp, map[string]string) {
	problems := map[string]string{}
	if email, ok := ParseEmail(s.Email); ok {
		s.Email = email
	} else {
		problems["email"] = "must be a plain e-mail address such as ada@example.com"
	}
	switch {
	case len(s.Password) > MaxPasswordBytes:
		problems["password"] = fmt.Sprintf("must be at most %d bytes", MaxPasswordBytes)
	case utf8.RuneCountInString(s.Password) < MinPasswordLen:
		problems["password"] = fmt.Sprintf("must be at least %d characters", MinPasswordLen)
	case !utf8.ValidString(s.Password):
		problems["password"] = "must be valid UTF-8"
	}
	s.Name = strings.TrimSpace(s.Name)
	switch {
	case s.Name == "":
		problems["name"] = "is required"
	case !utf8.ValidString(s.Name) || utf8.RuneCountInString(s.Name) > MaxNameLen:
		problems["name"] = fmt.Sprintf("must be at most %d characters of valid UTF-8", MaxNameLen)
	case strings.ContainsFunc(s.Name, unicode.IsControl):
		problems["name"] = "must not contain control characters"
	}
	return s, problems
}

// ParseEmail returns the lower-cased address when s is a bare e-mail
// address ("ada@example.com"), and false for anything else, including the
// display-name forms net/mail also accepts ("Ada <ada@example.com>").
func ParseEmail(s string) (string, bool) {
	if s == "" || len(s) > MaxEmailLen {
		return "", false
	}
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Name != "" || addr.Address != s {
		return "", false
	}
	return strings.ToLower(s), true
}

// LoginEmail is the form a login attempt's e-mail is looked up and rate
// limited in: trimmed and lower-cased, so "Ada@Example.com " is the same
// account and the same allowance as "ada@example.com".
func LoginEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewCustomerID returns "cus_" and 26 base32 characters of 128 random bits:
// ids must not be guessable, because a customer's id is the subject of its
// tokens and appears in URLs.
func NewCustomerID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return "cus_" + idEncoding.EncodeToString(b[:])
}
