package env_test

import (
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/pkg/env"
)

func TestReader(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"PORT": "9000", "RATIO": "0.5", "ON": "true", "WAIT": "250ms", "BAD_INT": "x", "BAD_DUR": "5", "BAD_BOOL": "maybe"}
	r := env.New(func(k string) string { return vars[k] })
	if got := r.Int("PORT", 1); got != 9000 {
		t.Errorf("Int(PORT) = %d; want 9000", got)
	}
	if got := r.Int("MISSING", 7); got != 7 {
		t.Errorf("Int(MISSING) = %d; want the default 7", got)
	}
	if got := r.Float("RATIO", 1); got != 0.5 {
		t.Errorf("Float(RATIO) = %v; want 0.5", got)
	}
	if got := r.Bool("ON", false); !got {
		t.Errorf("Bool(ON) = false; want true")
	}
	if got := r.Duration("WAIT", time.Second); got != 250*time.Millisecond {
		t.Errorf("Duration(WAIT) = %v; want 250ms", got)
	}
	if got := r.String("NAME", "def"); got != "def" {
		t.Errorf("String(NAME) = %q; want the default", got)
	}
	if r.Err() != nil {
		t.Fatalf("Err() = %v; want nil before any bad value", r.Err())
	}
	r.Int("BAD_INT", 0)
	r.Duration("BAD_DUR", 0)
	r.Bool("BAD_BOOL", false)
	r.Required("TOKEN")
	err := r.Err()
	if err == nil {
		t.Fatal("Err() = nil; want every problem")
	}
	for _, key := range []string{"BAD_INT", "BAD_DUR", "BAD_BOOL", "TOKEN"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("Err() = %q; want it to name %s", err, key)
		}
	}
}
