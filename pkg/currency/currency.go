// Package currency checks currency codes read from requests.
package currency

// IsCode reports whether s has the form of an ISO 4217 alphabetic code:
// three upper-case ASCII letters, such as USD. It does not check that the
// code is assigned.
func IsCode(s string) bool {
	if len(s) != 3 {
		return false
	}
	for _, c := range s {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}
