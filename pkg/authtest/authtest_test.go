package authtest_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/orderflow/orderflow/pkg/authtest"
)

func claims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts; want 3", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestHydra_Tokens(t *testing.T) {
	h := authtest.Start(t, authtest.Options{})
	ctx := context.Background()

	cus, err := h.CustomerToken(ctx, "cus_test1")
	if err != nil {
		t.Fatal(err)
	}
	c := claims(t, cus)
	if c["sub"] != "cus_test1" || c["iss"] != h.Issuer {
		t.Errorf("customer token sub=%v iss=%v; want cus_test1, %s", c["sub"], c["iss"], h.Issuer)
	}
	if !strings.Contains(mustJSON(c["aud"]), `"orderflow"`) || !strings.Contains(mustJSON(c["scp"]), `"orders"`) {
		t.Errorf("customer token aud=%v scp=%v; want orderflow and orders", c["aud"], c["scp"])
	}

	adm, err := h.AdminToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c := claims(t, adm); c["sub"] != "orderflow-admin" || mustJSON(c["scp"]) != `["orderflow.admin"]` {
		t.Errorf("admin token sub=%v scp=%v", c["sub"], c["scp"])
	}
	if _, err := h.ClientToken(ctx, "orderflow-order", "wrong-secret", "payments"); err == nil {
		t.Error("ClientToken with a wrong secret = nil error; want one")
	}
	if _, err := h.ClientToken(ctx, "orderflow-order", authtest.OrderSecret, "orderflow.admin"); err == nil {
		t.Error("orderflow-order got scope orderflow.admin; want a refusal")
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
