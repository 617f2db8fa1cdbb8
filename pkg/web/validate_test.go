package web_test

import (
	"strings"
	"testing"

	"github.com/orderflow/orderflow/pkg/web"
)

func TestCanonicalUUID(t *testing.T) {
	t.Parallel()
	const id = "01a23d1d-7424-758b-8d93-b1a2ef45eeaa"
	for s, want := range map[string]bool{
		id:                                     true,
		"00000000-0000-0000-0000-000000000000": true,
		strings.ToUpper(id):                    false,
		"{" + id + "}":                         false,
		"(" + id + ")":                         false,
		"urn:uuid:" + id:                       false,
		strings.ReplaceAll(id, "-", ""):        false,
		id[:35]:                                false,
		id + "0":                               false,
		"g" + id[1:]:                           false,
		id[:8] + "0" + id[9:]:                  false,
		id[:35] + "\x00":                       false,
		"":                                     false,
	} {
		if got := web.CanonicalUUID(s); got != want {
			t.Errorf("CanonicalUUID(%q) = %v; want %v", s, got, want)
		}
	}
}

func TestPlainText(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"":             true,
		"cus_1":        true,
		"é 😀 İ":        true,
		"a b":          true,
		"a\x00b":       false,
		"\xff":         false,
		"a\tb":         false,
		"a\r\nb":       false,
		"\x7f":         false,
		"a\u0085":      false,
		"\xed\xa0\x80": false,
	} {
		if got := web.PlainText(s); got != want {
			t.Errorf("PlainText(%q) = %v; want %v", s, got, want)
		}
	}
}
