package order

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/orderflow/orderflow/pkg/web"
)

// parseCreate decodes and validates a create-order body with the rules of
// the handler, minus the transport checks (Content-Type, size). Every error
// is a 400 *web.Problem.
func parseCreate(body []byte) (CreateRequest, error) {
	var in createRequest
	if err := web.DecodeBytes(body, &in); err != nil {
		return CreateRequest{}, err
	}
	return in.validated()
}

// FuzzParseCreate feeds arbitrary bodies to the create-order decode and
// validation path: it must never panic, must answer every bad body with a
// 400 problem, and must only accept requests within the contract's limits,
// whose hash does not depend on the JSON spelling.
func FuzzParseCreate(f *testing.F) {
	for _, seed := range []string{
		okBody,
		`{"customer_id":"c","items":[{"sku":"A","quantity":1}],"payment_method":"pm"}`,
		`{"customer_id":"c","items":[{"sku":"A","quantity":1},{"sku":"A","quantity":1}],"payment_method":"pm"}`,
		`{"customer_id":"c","email":"x@y","items":[],"payment_method":"pm"}`,
		`{"customer_id":"c","items":[{"sku":"A","quantity":1e3}],"payment_method":"pm"}`,
		`{"customer_id":1}`, `[]`, `null`, `{}`, `{"a":1}`, `{"customer_id":"\u0000"}`, ``, `{`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := parseCreate(body)
		if err != nil {
			var p *web.Problem
			if !errors.As(err, &p) || p.Status != http.StatusBadRequest || p.Code == "" {
				t.Fatalf("parseCreate(%q) error = %v; want a 400 problem", body, err)
			}
			if _, err := json.Marshal(p); err != nil {
				t.Fatalf("problem does not marshal: %v", err)
			}
			return
		}
		if len(req.Validate()) != 0 || req.CustomerID == "" || req.PaymentMethod == "" ||
			bytes.ContainsRune([]byte(req.CustomerID+req.Email+req.PaymentMethod), 0) ||
			len(req.Items) < 1 || len(req.Items) > MaxItems {
			t.Fatalf("parseCreate(%q) accepted %+v", body, req)
		}
		seen := map[string]bool{}
		for _, it := range req.Items {
			if it.SKU == "" || hasControl(it.SKU) || seen[it.SKU] || it.Quantity < 1 || it.Quantity > MaxQuantity {
				t.Fatalf("parseCreate(%q) accepted item %+v", body, it)
			}
			seen[it.SKU] = true
		}
		// The same request re-spelled has the same hash.
		wire := createRequest{CustomerID: req.CustomerID, Email: req.Email, PaymentMethod: req.PaymentMethod}
		for _, it := range req.Items {
			wire.Items = append(wire.Items, createItemRequest{SKU: it.SKU, Quantity: it.Quantity})
		}
		again, err := json.MarshalIndent(wire, " ", "   ")
		if err != nil {
			t.Fatal(err)
		}
		req2, err := parseCreate(again)
		if err != nil {
			t.Fatalf("re-spelled request rejected: %v", err)
		}
		if !bytes.Equal(req.hash(), req2.hash()) {
			t.Fatalf("hash depends on spelling: %q vs %q", body, again)
		}
	})
}
