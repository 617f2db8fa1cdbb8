//go:build faults

package faults

import (
	"testing"
	"time"
)

// TestFaults is the whole fault suite (`make test-faults`): thirteen faults
// one after the other on one stack, with the services' default policies,
// 20 orders/s.
func TestFaults(t *testing.T) {
	rows := runSuite(t, nil, 20, 2*time.Second, 3*time.Second, []fault{
		providerOutage(20 * time.Second),
		providerLatency(10 * time.Second),
		killInventory(5 * time.Second),
		cutRedis(10 * time.Second),
		cutSQS(20 * time.Second),
		killNotification(3 * time.Second),
		cutPostgres(10 * time.Second),
		cutPaymentDB(5 * time.Second),
		killProvider(5 * time.Second),
		slowPostgres(10 * time.Second),
		partitionOrderPayment(10 * time.Second),
		killRelay(3 * time.Second),
		parkRefund(),
	})
	if len(rows) > 0 {
		t.Logf("order p99 with the provider down, once the breakers opened: %v (target < 100ms)", rows[0].p99Open)
	}
	if len(rows) > 0 && rows[0].p99Open > 100*time.Millisecond {
		t.Errorf("order p99 with the provider down and the breakers open = %v; want < 100ms", rows[0].p99Open)
	}
}
