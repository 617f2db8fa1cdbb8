package payment

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/orderflow/orderflow/pkg/currency"
	"github.com/orderflow/orderflow/pkg/web"
)

func TestCreateRequest_Normalize(t *testing.T) {
	t.Parallel()
	const id = "0190a5a4-7b8e-7c3d-9f00-1234567890ab"
	tests := []struct {
		name       string
		in         CreateRequest
		wantFields []string
	}{
		{"valid", CreateRequest{id, 100, "USD", "pm_card_ok"}, nil},
		{"lower-case currency", CreateRequest{id, 100, "usd", "pm_card_ok"}, nil},
		{"bad order id", CreateRequest{"order-1", 100, "USD", "pm_card_ok"}, []string{"order_id"}},
		{"braced order id", CreateRequest{"{" + id + "}", 100, "USD", "pm_card_ok"}, []string{"order_id"}},
		{"zero amount", CreateRequest{id, 0, "USD", "pm_card_ok"}, []string{"amount_cents"}},
		{"negative amount", CreateRequest{id, -5, "USD", "pm_card_ok"}, []string{"amount_cents"}},
		{"bad currency", CreateRequest{id, 1, "US", "pm_card_ok"}, []string{"currency"}},
		{"digit currency", CreateRequest{id, 1, "U5D", "pm_card_ok"}, []string{"currency"}},
		{"no method", CreateRequest{id, 1, "USD", " "}, []string{"method"}},
		{"NUL in method", CreateRequest{id, 1, "USD", "pm\x00"}, []string{"method"}},
		{"invalid UTF-8 method", CreateRequest{id, 1, "USD", "pm\xff"}, []string{"method"}},
		{"everything wrong", CreateRequest{}, []string{"amount_cents", "currency", "method", "order_id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, problems := tt.in.Normalize()
			for _, f := range tt.wantFields {
				if problems[f] == "" {
					t.Errorf("Normalize(%+v) has no problem for %s: %v", tt.in, f, problems)
				}
			}
			if len(problems) != len(tt.wantFields) {
				t.Errorf("Normalize(%+v) problems = %v; want fields %v", tt.in, problems, tt.wantFields)
			}
			if len(problems) == 0 && got.Currency != "USD" {
				t.Errorf("Normalize(%+v).Currency = %q; want USD", tt.in, got.Currency)
			}
		})
	}
}

func TestCreateRequest_Hash(t *testing.T) {
	t.Parallel()
	a, _ := CreateRequest{"0190A5A4-7B8E-7C3D-9F00-1234567890AB", 100, "usd", "pm_card_ok"}.Normalize()
	b, _ := CreateRequest{"0190a5a4-7b8e-7c3d-9f00-1234567890ab", 100, "USD", "pm_card_ok"}.Normalize()
	if !bytes.Equal(a.Hash(), b.Hash()) {
		t.Error("equivalent requests hash differently")
	}
	c := b
	c.AmountCents = 101
	if bytes.Equal(b.Hash(), c.Hash()) {
		t.Error("different amounts hash equally")
	}
}

// TestKey_ProviderKey: the provider key is one per (caller, key) pair, the
// same every time, and fit for a header whatever the caller sent.
func TestKey_ProviderKey(t *testing.T) {
	t.Parallel()
	keys := []Key{
		{"orderflow-order", "k"}, {"orderflow-other", "k"}, {"orderflow-order", "k2"},
		// Pairs that one separator-joined string could not tell apart.
		{"a", "bc"}, {"ab", "c"}, {"a:", "b"}, {"a", ":b"}, {"", "1:ab"}, {"1:a", "b"},
	}
	seen := map[string]Key{}
	for _, k := range keys {
		pk := k.ProviderKey()
		if other, dup := seen[pk]; dup {
			t.Errorf("%+v and %+v share the provider key %s", k, other, pk)
		}
		seen[pk] = k
		if pk != k.ProviderKey() {
			t.Errorf("%+v.ProviderKey() changes between calls", k)
		}
		if len(pk) != 64 || strings.Trim(pk, "0123456789abcdef") != "" {
			t.Errorf("%+v.ProviderKey() = %q; want 64 hex digits", k, pk)
		}
	}
}

// FuzzDecodeCreate drives the body decode and validation path with arbitrary
// bytes: it must never panic, must answer every bad body with a 4xx problem,
// and must only accept requests that satisfy the contract.
func FuzzDecodeCreate(f *testing.F) {
	f.Add([]byte(`{"order_id":"0190a5a4-7b8e-7c3d-9f00-1234567890ab","amount_cents":100,"currency":"USD","method":"pm_card_ok"}`))
	f.Add([]byte(`{"order_id":"x","amount_cents":-1,"currency":"","method":""}`))
	f.Add([]byte(`{"amount_cents":"100"}`))
	f.Add([]byte(`{"extra":true}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{} {}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeCreate(body)
		if err != nil {
			var p *web.Problem
			if !errors.As(err, &p) {
				t.Fatalf("decodeCreate(%q) error %T %v is not a problem", body, err, err)
			}
			if p.Status != http.StatusBadRequest || p.Code == "" {
				t.Fatalf("decodeCreate(%q) = %d %q; want 400 with a code", body, p.Status, p.Code)
			}
			return
		}
		if req.AmountCents <= 0 || !currency.IsCode(req.Currency) || strings.TrimSpace(req.Method) == "" || len(req.OrderID) != 36 {
			t.Fatalf("decodeCreate(%q) accepted %+v", body, req)
		}
		if len(req.Method) > 255 {
			t.Fatalf("decodeCreate(%q) accepted a method of %d bytes", body, len(req.Method))
		}
		again, problems := req.Normalize()
		if len(problems) > 0 || again != req {
			t.Fatalf("normalized request %+v is not stable: %+v %v", req, again, problems)
		}
	})
}
