package web

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// CanonicalUUID reports whether s is a UUID in the one form the services
// write and accept: 36 characters, lower-case hex digits, hyphens at 8, 13,
// 18 and 23. uuid.Parse also takes braces, "urn:uuid:", 32 bare digits and
// any two characters around 36 (so "(…)"), which PostgreSQL then refuses or
// reads as another spelling of the same id: a value read from a request is
// checked with this before it reaches a store.
func CanonicalUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// PlainText reports whether s is valid UTF-8 without control characters
// (C0, DEL, C1): what an identifier, code or key read from a path, query,
// header or body must be before it reaches a store, a log line or another
// service. PostgreSQL refuses NUL and invalid UTF-8 in text outright.
func PlainText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl)
}
