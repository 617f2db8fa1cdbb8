package currency_test

import (
	"testing"

	"github.com/orderflow/orderflow/pkg/currency"
)

func TestIsCode(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"USD": true, "EUR": true, "XAU": true,
		"": false, "usd": false, "US": false, "USDT": false, "U$D": false, "ÜSD": false, "US\x00": false,
	} {
		if got := currency.IsCode(s); got != want {
			t.Errorf("IsCode(%q) = %v; want %v", s, got, want)
		}
	}
}
