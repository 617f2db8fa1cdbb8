package identity

import (
	"strings"
	"testing"
)

func TestCSRF_Valid(t *testing.T) {
	t.Parallel()
	c, err := NewCSRF(strings.Repeat("k", MinCSRFKeyLen))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewCSRF(strings.Repeat("o", MinCSRFKeyLen))
	browser, otherBrowser := NewBrowserID(), NewBrowserID()
	token := c.Token(PurposeLogin, "challenge-1", browser)

	tests := []struct {
		name                        string
		token, purpose, ch, browser string
		want                        bool
	}{
		{"same form, same browser", token, PurposeLogin, "challenge-1", browser, true},
		{"another browser's cookie", token, PurposeLogin, "challenge-1", otherBrowser, false},
		{"no cookie", token, PurposeLogin, "challenge-1", "", false},
		{"malformed cookie", token, PurposeLogin, "challenge-1", "short", false},
		{"another challenge", token, PurposeLogin, "challenge-2", browser, false},
		{"the consent form", token, PurposeConsent, "challenge-1", browser, false},
		{"no token", "", PurposeLogin, "challenge-1", browser, false},
		{"not base64", "!!" + token, PurposeLogin, "challenge-1", browser, false},
		{"truncated", token[:len(token)-2], PurposeLogin, "challenge-1", browser, false},
		{"signed with another key", other.Token(PurposeLogin, "challenge-1", browser), PurposeLogin, "challenge-1", browser, false},
		{"empty challenge", c.Token(PurposeLogin, "", browser), PurposeLogin, "", browser, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := c.Valid(tt.token, tt.purpose, tt.ch, tt.browser); got != tt.want {
				t.Errorf("Valid(%q, %q, %q, %q) = %v; want %v", tt.token, tt.purpose, tt.ch, tt.browser, got, tt.want)
			}
		})
	}
}

func TestNewCSRF_ShortKey(t *testing.T) {
	t.Parallel()
	if _, err := NewCSRF(strings.Repeat("k", MinCSRFKeyLen-1)); err == nil {
		t.Errorf("NewCSRF(%d characters) = nil error; want an error", MinCSRFKeyLen-1)
	}
}

func TestNewBrowserID(t *testing.T) {
	t.Parallel()
	a, b := NewBrowserID(), NewBrowserID()
	if !ValidBrowserID(a) || a == b {
		t.Errorf("NewBrowserID() = %q, %q; want two different valid ids", a, b)
	}
}
