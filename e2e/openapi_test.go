package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/google/uuid"
)

// specPath is docs/openapi.yaml as seen from this package's directory.
var specPath = filepath.Join("..", "docs", "openapi.yaml")

// specServices maps the default port of each server in the spec to the
// stack process that answers it.
var specServices = map[string]string{"8080": "order", "8081": "inventory", "8082": "payment", "8083": "notification", "8084": "identity"}

// loadSpec loads and validates docs/openapi.yaml.
func loadSpec(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(specPath)
	if err != nil {
		t.Fatalf("load %s: %v", specPath, err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("%s is not a valid OpenAPI document: %v", specPath, err)
	}
	return doc
}

// specChecker makes real calls to the stack and validates each request and
// response against the spec.
type specChecker struct {
	s      *stack
	router routers.Router
	opts   *openapi3filter.Options
}

// newSpecChecker points every server of doc (top level and per path) at the
// stack's ports, so the router matches the requests the test sends.
func newSpecChecker(t *testing.T, doc *openapi3.T, s *stack) *specChecker {
	t.Helper()
	// identity's login and consent pages are HTML: checked as opaque bodies.
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.FileBodyDecoder)
	rewrite := func(servers openapi3.Servers) {
		for _, srv := range servers {
			u, err := url.Parse(srv.URL)
			if err != nil {
				t.Fatalf("server %q: %v", srv.URL, err)
			}
			name, ok := specServices[u.Port()]
			if !ok {
				t.Fatalf("server %q is on no known service port", srv.URL)
			}
			srv.URL = s.url(name, "")
		}
	}
	rewrite(doc.Servers)
	for _, item := range doc.Paths.Map() {
		rewrite(item.Servers)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("router: %v", err)
	}
	return &specChecker{s: s, router: router, opts: &openapi3filter.Options{
		IncludeResponseStatus: true,
		MultiError:            true,
		// The spec's only scheme is the admin bearer token: the request is
		// well-formed when it carries one; whether it is the right one is
		// the service's business (a wrong token is a documented 401).
		AuthenticationFunc: func(_ context.Context, in *openapi3filter.AuthenticationInput) error {
			token, ok := strings.CutPrefix(in.RequestValidationInput.Request.Header.Get("Authorization"), "Bearer ")
			if !ok || token == "" {
				return errors.New("no bearer token")
			}
			return nil
		},
	}}
}

// apiCall is one request of the test and the status it must get.
type apiCall struct {
	service string
	method  string
	path    string
	body    any      // []byte or string sent as is, anything else as JSON
	ctype   string   // Content-Type of the body; application/json by default
	header  []string // name, value pairs
	status  int      // the status the service must answer
	// invalid says the request breaks the spec on purpose (a bad-input
	// case): the spec must reject it too, else it documents less than the
	// service checks.
	invalid bool
}

func (c apiCall) bytes(t *testing.T) []byte {
	t.Helper()
	switch b := c.body.(type) {
	case nil:
		return nil
	case []byte:
		return b
	case string:
		return []byte(b)
	default:
		out, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
}

// specCustomer places the spec test's orders.
const specCustomer = "cus_openapi"

func (c apiCall) request(t *testing.T, s *stack, ctx context.Context, body []byte) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, s.url(c.service, c.path), rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		ct := c.ctype
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	// Each call carries the token its caller would have, unless it says
	// otherwise (an empty Authorization value sends none).
	switch {
	case c.service == "order" || c.service == "notification":
		req.Header.Set("Authorization", "Bearer "+token(t, specCustomer))
	case c.service == "payment":
		req.Header.Set("Authorization", "Bearer "+token(t, "order-service:payments"))
	case c.service == "inventory" && strings.HasPrefix(c.path, "/v1/reservations"):
		req.Header.Set("Authorization", "Bearer "+token(t, "order-service:inventory.reservations"))
	}
	for i := 0; i+1 < len(c.header); i += 2 {
		req.Header.Set(c.header[i], c.header[i+1])
	}
	if req.Header.Get("Authorization") == "" {
		req.Header.Del("Authorization")
	}
	return req
}

// check sends call, fails t when the status is not the wanted one, when the
// spec's verdict on the request differs from call.invalid, or when the
// response (status, headers, body) does not match the spec.
func (sc *specChecker) check(t *testing.T, call apiCall) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	body := call.bytes(t)

	vreq := call.request(t, sc.s, ctx, body)
	route, params, err := sc.router.FindRoute(vreq)
	if err != nil {
		t.Fatalf("%s %s is not in %s: %v", call.method, call.path, specPath, err)
	}
	in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route, Options: sc.opts}
	reqErr := openapi3filter.ValidateRequest(ctx, in)
	switch {
	case call.invalid && reqErr == nil:
		t.Errorf("the spec accepts this request, which the service rejects with %d: document the constraint", call.status)
	case !call.invalid && reqErr != nil:
		t.Errorf("the spec rejects this request: %v", reqErr)
	}

	resp, err := http.DefaultClient.Do(call.request(t, sc.s, ctx, body))
	if err != nil {
		t.Fatalf("%s %s: %v", call.method, call.path, err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: read body: %v", call.method, call.path, err)
	}
	r := response{status: resp.StatusCode, header: resp.Header, raw: raw}
	if len(raw) > 0 && strings.Contains(resp.Header.Get("Content-Type"), "json") {
		_ = json.Unmarshal(raw, &r.body)
	}
	if r.status != call.status {
		t.Errorf("%s %s = %d %s; want %d", call.method, call.path, r.status, raw, call.status)
	}

	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: r.status, Header: r.header, Options: sc.opts,
	}
	out.SetBodyBytes(raw)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		t.Errorf("%s %s answered %d %s\nwhich %s does not allow: %v", call.method, call.path, r.status, raw, specPath, err)
	}
	// ValidateResponse skips 304 answers altogether: check that the spec
	// documents one here, and that it has no body.
	if r.status == http.StatusNotModified {
		if route.Operation.Responses.Status(http.StatusNotModified) == nil {
			t.Errorf("%s %s answered 304, which %s does not document", call.method, call.path, specPath)
		}
		if len(raw) > 0 {
			t.Errorf("304 with a body: %s", raw)
		}
	}
	return r
}

// str returns a string member of a decoded body, or "".
func str(body map[string]any, key string) string {
	v, _ := body[key].(string)
	return v
}

// TestOpenAPI makes every documented call to the real stack, with good and
// bad input, and validates each request and answer against
// docs/openapi.yaml: a status, header or field the spec does not document
// fails, error bodies included.
func TestOpenAPI(t *testing.T) {
	doc := loadSpec(t)
	// The processes inherit the test's environment under the stack's own
	// settings: a cache namespace of this run's own keeps product reads from
	// another test's stack out of this one's (and the other way round), and
	// no payment retries keep the 504 case to one provider timeout.
	t.Setenv("INVENTORY_CACHE_PREFIX", fmt.Sprintf("e2e-openapi-%d:", time.Now().UnixNano()))
	t.Setenv("PAYMENT_RETRY_MAX", "0")
	s := startStack(t)
	sc := newSpecChecker(t, doc, s)

	// run runs one call as a subtest and returns its answer (the zero
	// response when the subtest stopped early).
	run := func(name string, call apiCall) response {
		t.Helper()
		var r response
		t.Run(name, func(t *testing.T) { r = sc.check(t, call) })
		return r
	}
	need := func(t *testing.T, what string, values ...string) {
		t.Helper()
		for _, v := range values {
			if v == "" {
				t.Fatalf("an earlier subtest did not give %s", what)
			}
		}
	}
	admin := s.admin()
	wrongAdmin := []string{"Authorization", "Bearer not-the-token"}
	big := map[string]any{"customer_id": strings.Repeat("a", 70<<10), "items": []map[string]any{{"sku": "SKU-00050", "quantity": 1}},
		"payment_method": "pm_card_ok"}

	for _, svc := range []string{"order", "inventory", "payment", "notification"} {
		run(svc+"/GET /healthz 200", apiCall{service: svc, method: "GET", path: "/healthz", status: 200})
		run(svc+"/GET /readyz 200", apiCall{service: svc, method: "GET", path: "/readyz", status: 200})
		run(svc+"/GET /metrics 200", apiCall{service: svc, method: "GET", path: "/metrics", status: 200})
	}

	// ---- inventory: stock, products, reservations.
	stock := func(sku string, n int) apiCall {
		return apiCall{service: "inventory", method: "PUT", path: "/v1/products/" + sku + "/stock",
			body: map[string]any{"available": n}, header: admin, status: 200}
	}
	for _, sku := range []string{"SKU-00050", "SKU-00052", "SKU-00053"} {
		run("inventory/PUT stock "+sku+" 200", stock(sku, 1000))
	}
	run("inventory/PUT stock SKU-00051 200", stock("SKU-00051", 1))
	noToken := stock("SKU-00050", 5)
	noToken.header, noToken.status, noToken.invalid = nil, 401, true
	run("inventory/PUT stock without token 401", noToken)
	wrongToken := stock("SKU-00050", 5)
	wrongToken.header, wrongToken.status = wrongAdmin, 401
	run("inventory/PUT stock with wrong token 401", wrongToken)
	negative := stock("SKU-00050", -1)
	negative.status, negative.invalid = 400, true
	run("inventory/PUT stock negative 400", negative)
	unknownField := stock("SKU-00050", 1)
	unknownField.body, unknownField.status, unknownField.invalid = map[string]any{"available": 1, "reserved": 2}, 400, true
	run("inventory/PUT stock unknown field 400", unknownField)
	missing := stock("SKU-00050", 1)
	missing.body, missing.status, missing.invalid = map[string]any{}, 400, true
	run("inventory/PUT stock missing field 400", missing)
	textBody := stock("SKU-00050", 1)
	textBody.body, textBody.ctype, textBody.status, textBody.invalid = "available=1", "text/plain", 415, true
	run("inventory/PUT stock text/plain 415", textBody)
	run("inventory/PUT stock unknown sku 404", stock("SKU-99999", 1).with(404))

	product := run("inventory/GET product 200", apiCall{service: "inventory", method: "GET", path: "/v1/products/SKU-00050", status: 200})
	run("inventory/GET product again 200", apiCall{service: "inventory", method: "GET", path: "/v1/products/SKU-00050", status: 200})
	t.Run("inventory/GET product If-None-Match 304", func(t *testing.T) {
		etag := product.header.Get("ETag")
		need(t, "an ETag", etag)
		r := sc.check(t, apiCall{service: "inventory", method: "GET", path: "/v1/products/SKU-00050",
			header: []string{"If-None-Match", etag}, status: 304})
		if got := r.header.Get("ETag"); got != etag {
			t.Errorf("304 ETag = %q; want %q", got, etag)
		}
	})
	run("inventory/GET product unknown 404", apiCall{service: "inventory", method: "GET", path: "/v1/products/SKU-99999", status: 404})
	page := run("inventory/GET products 200", apiCall{service: "inventory", method: "GET", path: "/v1/products?limit=2", status: 200})
	t.Run("inventory/GET products next page 200", func(t *testing.T) {
		next := str(page.body, "next_cursor")
		need(t, "a next_cursor", next)
		sc.check(t, apiCall{service: "inventory", method: "GET", path: "/v1/products?limit=2&cursor=" + url.QueryEscape(next), status: 200})
	})
	t.Run("inventory/GET products If-None-Match 304", func(t *testing.T) {
		etag := page.header.Get("ETag")
		need(t, "an ETag", etag)
		sc.check(t, apiCall{service: "inventory", method: "GET", path: "/v1/products?limit=2",
			header: []string{"If-None-Match", etag}, status: 304})
	})
	run("inventory/GET products last page 200", apiCall{service: "inventory", method: "GET", path: "/v1/products?limit=100", status: 200})
	run("inventory/GET products limit=0 400", apiCall{service: "inventory", method: "GET", path: "/v1/products?limit=0", status: 400, invalid: true})
	run("inventory/GET products limit=abc 400", apiCall{service: "inventory", method: "GET", path: "/v1/products?limit=abc", status: 400, invalid: true})
	run("inventory/GET products bad cursor 400", apiCall{service: "inventory", method: "GET", path: "/v1/products?cursor=~~~", status: 400})

	reserve := func(orderID string, items ...map[string]any) apiCall {
		return apiCall{service: "inventory", method: "POST", path: "/v1/reservations",
			body: map[string]any{"order_id": orderID, "items": items}, status: 201}
	}
	item := func(sku string, qty int) map[string]any { return map[string]any{"sku": sku, "quantity": qty} }
	rid, rid2 := uuid.Must(uuid.NewV7()).String(), uuid.Must(uuid.NewV7()).String()
	run("inventory/POST reservation 201", reserve(rid, item("SKU-00052", 2), item("SKU-00053", 1)))
	run("inventory/POST reservation again 200", reserve(rid, item("SKU-00052", 2), item("SKU-00053", 1)).with(200))
	run("inventory/GET reservation 200", apiCall{service: "inventory", method: "GET", path: "/v1/reservations/" + rid, status: 200})
	run("inventory/POST commit 200", apiCall{service: "inventory", method: "POST", path: "/v1/reservations/" + rid + "/commit", status: 200})
	run("inventory/POST commit again 200", apiCall{service: "inventory", method: "POST", path: "/v1/reservations/" + rid + "/commit", status: 200})
	run("inventory/POST reservation 201 (to release)", reserve(rid2, item("SKU-00052", 1)))
	run("inventory/POST release 200", apiCall{service: "inventory", method: "POST", path: "/v1/reservations/" + rid2 + "/release", status: 200})
	run("inventory/POST release again 200", apiCall{service: "inventory", method: "POST", path: "/v1/reservations/" + rid2 + "/release", status: 200})
	run("inventory/POST commit released 409", apiCall{service: "inventory", method: "POST", path: "/v1/reservations/" + rid2 + "/commit", status: 409})
	unknownRes := uuid.Must(uuid.NewV7()).String()
	run("inventory/GET reservation unknown 404", apiCall{service: "inventory", method: "GET", path: "/v1/reservations/" + unknownRes, status: 404})
	run("inventory/POST commit unknown 404", apiCall{service: "inventory", method: "POST", path: "/v1/reservations/" + unknownRes + "/commit", status: 404})
	run("inventory/POST release unknown 200 (tombstone)", apiCall{service: "inventory", method: "POST", path: "/v1/reservations/" + unknownRes + "/release", status: 200})
	run("inventory/GET reservation bad id 400", apiCall{service: "inventory", method: "GET", path: "/v1/reservations/not-a-uuid", status: 400, invalid: true})
	run("inventory/POST reservation out of stock 409", reserve(uuid.Must(uuid.NewV7()).String(), item("SKU-00051", 5)).with(409))
	run("inventory/POST reservation unknown sku 409", reserve(uuid.Must(uuid.NewV7()).String(), item("SKU-99999", 1)).with(409))
	badQty := reserve(uuid.Must(uuid.NewV7()).String(), item("SKU-00052", 0)).with(400)
	badQty.invalid = true
	run("inventory/POST reservation quantity 0 400", badQty)
	noItems := reserve(uuid.Must(uuid.NewV7()).String()).with(400)
	noItems.invalid = true
	run("inventory/POST reservation no items 400", noItems)
	badJSON := reserve(rid).with(400)
	badJSON.body, badJSON.invalid = `{"order_id":`, true
	run("inventory/POST reservation bad JSON 400", badJSON)
	tooBig := reserve(rid).with(413)
	tooBig.body, tooBig.invalid = map[string]any{"order_id": strings.Repeat("0", 70<<10), "items": []any{item("SKU-00052", 1)}}, true
	run("inventory/POST reservation too large 413", tooBig)
	textRes := reserve(rid).with(415)
	textRes.body, textRes.ctype, textRes.invalid = "order_id="+rid, "text/plain", true
	run("inventory/POST reservation text/plain 415", textRes)

	// ---- order: the saga and its failure answers.
	create := func(key string, body any) apiCall {
		return apiCall{service: "order", method: "POST", path: "/v1/orders", body: body,
			header: []string{"Idempotency-Key", key}, status: 201}
	}
	const customer = specCustomer
	happyKey := newKey()
	happy := run("order/POST order 201", create(happyKey, orderBody(customer, "SKU-00050", 2, "pm_card_ok")))
	orderID, paymentID := str(happy.body, "id"), str(happy.body, "payment_id")
	t.Run("order/POST order replay 201", func(t *testing.T) {
		r := sc.check(t, create(happyKey, orderBody(customer, "SKU-00050", 2, "pm_card_ok")))
		if r.header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(r.raw, happy.raw) {
			t.Errorf("replay = %q %s; want the first answer with Idempotent-Replayed: true", r.header.Get("Idempotent-Replayed"), r.raw)
		}
	})
	run("order/POST order key reused 422", create(happyKey, orderBody(customer, "SKU-00050", 3, "pm_card_ok")).with(422))
	second := run("order/POST second order 201", create(newKey(), map[string]any{"customer_id": customer,
		"items": []any{item("SKU-00050", 1), item("SKU-00052", 1)}, "payment_method": "pm_card_ok"}))
	noKey := create("", orderBody(customer, "SKU-00050", 1, "pm_card_ok")).with(400)
	noKey.header, noKey.invalid = nil, true
	run("order/POST order without key 400", noKey)
	longKey := create(strings.Repeat("k", 256), orderBody(customer, "SKU-00050", 1, "pm_card_ok")).with(400)
	longKey.invalid = true
	run("order/POST order key too long 400", longKey)
	for _, bad := range []struct {
		name string
		body any
	}{
		{"quantity 0", orderBody(customer, "SKU-00050", 0, "pm_card_ok")},
		{"quantity 1001", orderBody(customer, "SKU-00050", 1001, "pm_card_ok")},
		{"51 items", func() map[string]any {
			items := make([]any, 51)
			for i := range items {
				items[i] = item(fmt.Sprintf("SKU-%05d", i+1), 1)
			}
			return map[string]any{"customer_id": customer, "items": items, "payment_method": "pm_card_ok"}
		}()},
		{"missing payment_method", map[string]any{"customer_id": customer, "items": []any{item("SKU-00050", 1)}}},
		{"unknown field", map[string]any{"customer_id": customer, "items": []any{item("SKU-00050", 1)},
			"payment_method": "pm_card_ok", "coupon": "FREE"}},
		{"bad JSON", `{"customer_id": "cus_openapi", "items": [`},
		{"not an object", `[1, 2, 3]`},
	} {
		c := create(newKey(), bad.body).with(400)
		c.invalid = true
		run("order/POST order "+bad.name+" 400", c)
	}
	large := create(newKey(), big).with(413)
	large.invalid = true
	run("order/POST order too large 413", large)
	text := create(newKey(), "customer_id=cus_openapi").with(415)
	text.ctype, text.invalid = "text/plain", true
	run("order/POST order text/plain 415", text)
	t.Run("order/POST order out of stock 409", func(t *testing.T) {
		r := sc.check(t, create(newKey(), orderBody(customer, "SKU-00051", 2, "pm_card_ok")).with(409))
		if str(r.body, "code") != "out_of_stock" || str(r.body, "order_id") == "" {
			t.Errorf("body = %s; want out_of_stock with skus and order_id", r.raw)
		}
	})
	run("order/POST order unknown sku 409", create(newKey(), orderBody(customer, "SKU-99999", 1, "pm_card_ok")).with(409))
	declinedKey := newKey()
	declined := run("order/POST order declined 402", create(declinedKey, orderBody(customer, "SKU-00050", 1, "pm_card_declined")).with(402))
	declinedID := str(declined.body, "order_id")
	t.Run("order/POST order declined replay 402", func(t *testing.T) {
		r := sc.check(t, create(declinedKey, orderBody(customer, "SKU-00050", 1, "pm_card_declined")).with(402))
		if r.header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("Idempotent-Replayed = %q; want true", r.header.Get("Idempotent-Replayed"))
		}
	})
	run("order/POST order insufficient funds 402", create(newKey(), orderBody(customer, "SKU-00050", 1, "pm_card_insufficient_funds")).with(402))

	t.Run("order/GET order 200", func(t *testing.T) {
		need(t, "an order id", orderID)
		sc.check(t, apiCall{service: "order", method: "GET", path: "/v1/orders/" + orderID, status: 200})
	})
	t.Run("order/GET declined order 200", func(t *testing.T) {
		need(t, "an order id", declinedID)
		sc.check(t, apiCall{service: "order", method: "GET", path: "/v1/orders/" + declinedID, status: 200})
	})
	run("order/GET order unknown 404", apiCall{service: "order", method: "GET", path: "/v1/orders/" + uuid.Must(uuid.NewV7()).String(), status: 404})
	run("order/GET order bad id 404", apiCall{service: "order", method: "GET", path: "/v1/orders/not-a-uuid", status: 404, invalid: true})
	list := run("order/GET orders 200", apiCall{service: "order", method: "GET", path: "/v1/orders?customer_id=" + customer + "&limit=2", status: 200})
	t.Run("order/GET orders next page 200", func(t *testing.T) {
		next := str(list.body, "next_cursor")
		need(t, "a next_cursor", next)
		sc.check(t, apiCall{service: "order", method: "GET",
			path: "/v1/orders?customer_id=" + customer + "&limit=2&cursor=" + url.QueryEscape(next), status: 200})
	})
	run("order/GET orders of another customer 403", apiCall{service: "order", method: "GET", path: "/v1/orders?customer_id=cus_nobody", status: 403})
	run("order/GET orders, the caller's own 200", apiCall{service: "order", method: "GET", path: "/v1/orders", status: 200})
	run("order/GET orders, an operator without customer 400", apiCall{service: "order", method: "GET", path: "/v1/orders", header: admin, status: 400})
	run("order/GET orders limit=101 400", apiCall{service: "order", method: "GET", path: "/v1/orders?customer_id=" + customer + "&limit=101", status: 400, invalid: true})
	run("order/GET orders bad cursor 400", apiCall{service: "order", method: "GET", path: "/v1/orders?customer_id=" + customer + "&cursor=~~~", status: 400})
	secondID := str(second.body, "id")
	t.Run("order/POST cancel 200", func(t *testing.T) {
		need(t, "an order id", secondID)
		r := sc.check(t, apiCall{service: "order", method: "POST", path: "/v1/orders/" + secondID + "/cancel", status: 200})
		if str(r.body, "status") != "cancelled" {
			t.Errorf("status = %q; want cancelled", str(r.body, "status"))
		}
	})
	t.Run("order/POST cancel again 200", func(t *testing.T) {
		need(t, "an order id", secondID)
		sc.check(t, apiCall{service: "order", method: "POST", path: "/v1/orders/" + secondID + "/cancel", status: 200})
	})
	t.Run("order/POST cancel declined 409", func(t *testing.T) {
		need(t, "an order id", declinedID)
		sc.check(t, apiCall{service: "order", method: "POST", path: "/v1/orders/" + declinedID + "/cancel", status: 409})
	})
	run("order/POST cancel unknown 404", apiCall{service: "order", method: "POST", path: "/v1/orders/" + uuid.Must(uuid.NewV7()).String() + "/cancel", status: 404})

	// ---- payment: captures, refunds and the provider's settings.
	pay := func(key string, body any) apiCall {
		return apiCall{service: "payment", method: "POST", path: "/v1/payments", body: body,
			header: []string{"Idempotency-Key", key}, status: 201}
	}
	payOrder := uuid.Must(uuid.NewV7()).String()
	payBody := func(amount int, method string) map[string]any {
		return map[string]any{"order_id": payOrder, "amount_cents": amount, "currency": "usd", "method": method}
	}
	payKey := newKey()
	payment := run("payment/POST payment 201", pay(payKey, payBody(1234, "pm_card_ok")))
	directPaymentID := str(payment.body, "id")
	t.Run("payment/POST payment replay 201", func(t *testing.T) {
		r := sc.check(t, pay(payKey, payBody(1234, "pm_card_ok")))
		if r.header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(r.raw, payment.raw) {
			t.Errorf("replay = %q %s; want the first answer with Idempotent-Replayed: true", r.header.Get("Idempotent-Replayed"), r.raw)
		}
	})
	run("payment/POST payment key reused 422", pay(payKey, payBody(999, "pm_card_ok")).with(422))
	declinedPayKey := newKey()
	run("payment/POST payment declined 402", pay(declinedPayKey, payBody(500, "pm_card_declined")).with(402))
	run("payment/POST payment declined replay 402", pay(declinedPayKey, payBody(500, "pm_card_declined")).with(402))
	run("payment/POST payment insufficient funds 402", pay(newKey(), payBody(500, "pm_card_insufficient_funds")).with(402))
	payNoKey := pay("", payBody(1, "pm_card_ok")).with(400)
	payNoKey.header, payNoKey.invalid = nil, true
	run("payment/POST payment without key 400", payNoKey)
	for _, bad := range []struct {
		name string
		body any
	}{
		{"currency US", map[string]any{"order_id": payOrder, "amount_cents": 1, "currency": "US", "method": "pm_card_ok"}},
		{"amount 0", payBody(0, "pm_card_ok")},
		{"bad order_id", map[string]any{"order_id": "order-1", "amount_cents": 1, "currency": "USD", "method": "pm_card_ok"}},
		{"unknown field", map[string]any{"order_id": payOrder, "amount_cents": 1, "currency": "USD", "method": "pm_card_ok", "tip": 1}},
		{"bad JSON", `{"order_id":`},
	} {
		c := pay(newKey(), bad.body).with(400)
		c.invalid = true
		run("payment/POST payment "+bad.name+" 400", c)
	}
	payLarge := pay(newKey(), map[string]any{"order_id": payOrder, "amount_cents": 1, "currency": "USD",
		"method": strings.Repeat("m", 70<<10)}).with(413)
	payLarge.invalid = true
	run("payment/POST payment too large 413", payLarge)
	payText := pay(newKey(), "amount_cents=1").with(415)
	payText.ctype, payText.invalid = "text/plain", true
	run("payment/POST payment text/plain 415", payText)
	t.Run("payment/GET payment 200", func(t *testing.T) {
		need(t, "a payment id", directPaymentID)
		sc.check(t, apiCall{service: "payment", method: "GET", path: "/v1/payments/" + directPaymentID, status: 200})
	})
	t.Run("payment/GET order's payment 200", func(t *testing.T) {
		need(t, "the happy order's payment id", paymentID)
		sc.check(t, apiCall{service: "payment", method: "GET", path: "/v1/payments/" + paymentID, status: 200})
	})
	run("payment/GET payment unknown 404", apiCall{service: "payment", method: "GET", path: "/v1/payments/" + uuid.Must(uuid.NewV7()).String(), status: 404})
	run("payment/GET payments 200", apiCall{service: "payment", method: "GET", path: "/v1/payments?order_id=" + payOrder, status: 200})
	run("payment/GET payments none 200", apiCall{service: "payment", method: "GET", path: "/v1/payments?order_id=" + uuid.Must(uuid.NewV7()).String(), status: 200})
	run("payment/GET payments without order_id 400", apiCall{service: "payment", method: "GET", path: "/v1/payments", status: 400, invalid: true})
	run("payment/GET payments bad order_id 400", apiCall{service: "payment", method: "GET", path: "/v1/payments?order_id=abc", status: 400, invalid: true})
	t.Run("payment/POST refund 200", func(t *testing.T) {
		need(t, "a payment id", directPaymentID)
		r := sc.check(t, apiCall{service: "payment", method: "POST", path: "/v1/payments/" + directPaymentID + "/refund", status: 200})
		if str(r.body, "status") != "refunded" {
			t.Errorf("status = %q; want refunded", str(r.body, "status"))
		}
	})
	t.Run("payment/POST refund again 200", func(t *testing.T) {
		need(t, "a payment id", directPaymentID)
		sc.check(t, apiCall{service: "payment", method: "POST", path: "/v1/payments/" + directPaymentID + "/refund", status: 200})
	})
	run("payment/POST refund unknown 404", apiCall{service: "payment", method: "POST", path: "/v1/payments/" + uuid.Must(uuid.NewV7()).String() + "/refund", status: 404})

	provider := func(body any) apiCall {
		return apiCall{service: "payment", method: "PUT", path: "/admin/provider", body: body, header: admin, status: 200}
	}
	run("payment/GET provider 200", apiCall{service: "payment", method: "GET", path: "/admin/provider", header: admin, status: 200})
	noAuth := []string{"Authorization", ""}
	run("payment/GET provider without token 401", apiCall{service: "payment", method: "GET", path: "/admin/provider", header: noAuth, status: 401, invalid: true})
	run("payment/GET provider with the order service's token 403", apiCall{service: "payment", method: "GET", path: "/admin/provider", status: 403})
	run("payment/PUT provider 200", provider(map[string]any{"latency_ms": 0, "error_rate": 0, "outage": false}))
	run("payment/PUT provider partial 200", provider(map[string]any{"latency_ms": 0}))
	provNoToken := provider(map[string]any{"outage": true})
	provNoToken.header, provNoToken.status, provNoToken.invalid = noAuth, 401, true
	run("payment/PUT provider without token 401", provNoToken)
	provWrong := provider(map[string]any{"outage": true})
	provWrong.header, provWrong.status = wrongAdmin, 401
	run("payment/PUT provider wrong token 401", provWrong)
	run("payment/POST refund without token 401", apiCall{service: "payment", method: "POST", path: "/v1/payments/" + uuid.Must(uuid.NewV7()).String() + "/refund", header: noAuth, status: 401, invalid: true})
	run("payment/POST refund with a customer token 403", apiCall{service: "payment", method: "POST", path: "/v1/payments/" + uuid.Must(uuid.NewV7()).String() + "/refund",
		header: []string{"Authorization", "Bearer " + token(t, specCustomer)}, status: 403})
	provBad := provider(map[string]any{"error_rate": 2}).with(400)
	provBad.invalid = true
	run("payment/PUT provider error_rate 2 400", provBad)
	provUnknown := provider(map[string]any{"outages": true}).with(400)
	provUnknown.invalid = true
	run("payment/PUT provider unknown field 400", provUnknown)

	// ---- notification: what the workers made of the happy and declined orders.
	waitFor := func(t *testing.T, path, member string) {
		t.Helper()
		eventually(t, 30*time.Second, path+" lists a sent item", func() bool {
			r := s.do(http.MethodGet, "notification", path, nil)
			items, _ := r.body[member].([]any)
			if len(items) == 0 {
				return false
			}
			first, _ := items[0].(map[string]any)
			_, unsent := first["sent_at"]
			return !unsent || first["sent_at"] != nil
		})
	}
	t.Run("notification/GET invoices 200", func(t *testing.T) {
		need(t, "an order id", orderID)
		waitFor(t, "/v1/invoices?order_id="+orderID, "invoices")
		r := sc.check(t, apiCall{service: "notification", method: "GET", path: "/v1/invoices?order_id=" + orderID, status: 200})
		if invs, _ := r.body["invoices"].([]any); len(invs) != 1 {
			t.Errorf("invoices = %s; want one", r.raw)
		}
	})
	t.Run("notification/GET emails 200", func(t *testing.T) {
		need(t, "an order id", orderID)
		waitFor(t, "/v1/emails?order_id="+orderID, "emails")
		sc.check(t, apiCall{service: "notification", method: "GET", path: "/v1/emails?order_id=" + orderID, status: 200})
	})
	t.Run("notification/GET emails of a declined order 200", func(t *testing.T) {
		need(t, "an order id", declinedID)
		waitFor(t, "/v1/emails?order_id="+declinedID, "emails")
		sc.check(t, apiCall{service: "notification", method: "GET", path: "/v1/emails?order_id=" + declinedID, status: 200})
	})
	none := uuid.Must(uuid.NewV7()).String()
	run("notification/GET invoices none, operator 200", apiCall{service: "notification", method: "GET", path: "/v1/invoices?order_id=" + none, header: admin, status: 200})
	run("notification/GET emails none, operator 200", apiCall{service: "notification", method: "GET", path: "/v1/emails?order_id=" + none, header: admin, status: 200})
	run("notification/GET invoices none of the customer's 404", apiCall{service: "notification", method: "GET", path: "/v1/invoices?order_id=" + none, status: 404})
	run("notification/GET emails of another customer 404", apiCall{service: "notification", method: "GET", path: "/v1/emails?order_id=" + orderID,
		header: []string{"Authorization", "Bearer " + token(t, "cus_openapi_other")}, status: 404})
	run("notification/GET invoices without token 401", apiCall{service: "notification", method: "GET", path: "/v1/invoices?order_id=" + orderID, header: noAuth, status: 401, invalid: true})

	// ---- identity: sign-up and the login page.
	email := fmt.Sprintf("openapi-%d@example.com", time.Now().UnixNano())
	signUp := func(body any) apiCall {
		return apiCall{service: "identity", method: "POST", path: "/v1/customers", body: body, status: 201}
	}
	run("identity/POST customers 201", signUp(map[string]any{"email": email, "password": "correct horse battery", "name": "Spec"}))
	run("identity/POST customers taken 409", signUp(map[string]any{"email": email, "password": "correct horse battery", "name": "Spec"}).with(409))
	short := signUp(map[string]any{"email": "x" + email, "password": "short", "name": "Spec"}).with(400)
	short.invalid = true
	run("identity/POST customers short password 400", short)
	badEmail := signUp(map[string]any{"email": "not-an-address", "password": "correct horse battery", "name": "Spec"}).with(400)
	run("identity/POST customers bad e-mail 400", badEmail)
	textSignUp := signUp("email=x").with(415)
	textSignUp.ctype, textSignUp.invalid = "text/plain", true
	run("identity/POST customers text/plain 415", textSignUp)
	run("identity/GET login without a challenge 400", apiCall{service: "identity", method: "GET", path: "/login", status: 400, invalid: true})
	for _, p := range []string{"/v1/invoices", "/v1/emails"} {
		run("notification/GET "+p+" without order_id 400", apiCall{service: "notification", method: "GET", path: p, status: 400, invalid: true})
		run("notification/GET "+p+" bad order_id 400", apiCall{service: "notification", method: "GET", path: p + "?order_id=abc", status: 400, invalid: true})
	}

	// ---- last, because they leave the provider's breakers open: a slow
	// provider (504) and a provider outage (503, and the order saga's 503).
	run("payment/PUT provider slow 200", provider(map[string]any{"latency_ms": 3500, "outage": false}))
	t.Run("payment/POST payment provider slow 504", func(t *testing.T) {
		r := sc.check(t, pay(newKey(), map[string]any{"order_id": uuid.Must(uuid.NewV7()).String(), "amount_cents": 100,
			"currency": "USD", "method": "pm_card_ok"}).with(504))
		if r.status == 504 && r.header.Get("Retry-After") == "" {
			t.Error("504 without Retry-After")
		}
	})
	run("payment/PUT provider outage 200", provider(map[string]any{"latency_ms": 0, "outage": true}))
	run("payment/POST payment provider down 503", pay(newKey(), map[string]any{"order_id": uuid.Must(uuid.NewV7()).String(),
		"amount_cents": 100, "currency": "USD", "method": "pm_card_ok"}).with(503))
	t.Run("payment/POST refund provider down 503", func(t *testing.T) {
		need(t, "the happy order's payment id", paymentID)
		sc.check(t, apiCall{service: "payment", method: "POST", path: "/v1/payments/" + paymentID + "/refund", status: 503})
	})
	t.Run("order/POST order dependency down 503", func(t *testing.T) {
		r := sc.check(t, create(newKey(), orderBody(customer, "SKU-00053", 1, "pm_card_ok")).with(503))
		if r.header.Get("Retry-After") == "" || str(r.body, "order_id") == "" {
			t.Errorf("503 = %v %s; want Retry-After and order_id", r.header, r.raw)
		}
	})
	run("payment/PUT provider back 200", provider(map[string]any{"latency_ms": 0, "error_rate": 0, "outage": false}))
}

// with returns the call with another wanted status.
func (c apiCall) with(status int) apiCall {
	c.status = status
	return c
}
