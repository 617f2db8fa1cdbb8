package faults

import (
	"strings"
	"testing"
	"time"
)

// TestFaultsShort is the fault suite's short version, part of `make test`:
// a provider outage and a SIGKILLed inventory, a few seconds each, under a
// steady load, with every invariant checked after each, and the orders of
// the outage answered fast-fail once the breakers opened. Breakers
// half-open after 2s here instead of 5s to keep it short.
func TestFaultsShort(t *testing.T) {
	short := map[string][]string{
		"order":   {"ORDER_BREAKER_DELAY=2s"},
		"payment": {"PAYMENT_BREAKER_DELAY=2s"},
	}
	rows := runSuite(t, suite{extra: short, rate: 20, warmup: time.Second, settle: time.Second}, []fault{
		providerOutage(4 * time.Second),
		killInventory(3 * time.Second),
	})
	if len(rows) > 0 && strings.HasPrefix(rows[0].fault, "1 ") { // not when FAULTS_ONLY left it out
		t.Logf("order p99 with the provider down, once the breakers opened: %v (printed; speed is the benchmarks' to measure)", rows[0].p99Open)
		for _, v := range failFastViolations(rows[0]) {
			t.Errorf("%s: %s", rows[0].fault, v)
		}
	}
}
