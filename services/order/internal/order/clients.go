package order

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/orderflow/orderflow/pkg/resilience"
)

// maxResponseBytes caps what the clients read of a downstream answer.
const maxResponseBytes = 1 << 20

// StatusError is a downstream answer the saga does not expect: a 5xx, or a
// 4xx other than the contract's business errors. The outcome of the call is
// unknown.
type StatusError struct {
	Op     string
	Status int
	Code   string
}

// Error describes the unexpected answer.
func (e *StatusError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("%s: status %d (%s)", e.Op, e.Status, e.Code)
	}
	return fmt.Sprintf("%s: status %d", e.Op, e.Status)
}

// downstream is the shared HTTP plumbing of both clients. Every request
// goes through the dependency's failsafe-go policies (guard): a timeout per
// attempt, its circuit breaker, its bulkhead, and retries for the calls
// marked resilience.Idempotent. The whole call is bounded by the caller's
// context.
//
// Which calls are retried, and why it is safe:
//   - inventory Reserve: inventory keys the reservation by order_id, so a
//     repeat returns the existing reservation;
//   - inventory Commit and Release: idempotent state changes per order_id;
//   - payment Capture: it carries the order id as Idempotency-Key, so a
//     repeat replays the first capture and never charges twice;
//   - payment Refund: refunding a refunded payment is a no-op;
//   - payment ListByOrder: a GET.
//
// Every call the saga makes is therefore retried; a new call that is not
// idempotent must not be marked, and then gets one attempt only.
type downstream struct {
	base  string
	guard *resilience.Downstream
	http  *http.Client
}

func newDownstream(baseURL string, guard *resilience.Downstream) downstream {
	return downstream{base: strings.TrimRight(baseURL, "/"), guard: guard, http: guard.Client()}
}

// RetryAfter is how long the dependency's circuit breaker stays open (0
// when it is closed): calls until then are refused without being made.
func (d downstream) RetryAfter() time.Duration { return d.guard.RemainingDelay() }

// problem is the part of an RFC 9457 body the clients read.
type problem struct {
	Code        string   `json:"code"`
	SKUs        []string `json:"skus"`
	DeclineCode string   `json:"decline_code"`
}

// do sends a JSON request and returns the status and body of the answer.
func (d downstream) do(ctx context.Context, method, path string, header http.Header, in any) (int, []byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, nil, fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.base+path, body)
	if err != nil {
		return 0, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := d.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return 0, nil, fmt.Errorf("read %s %s: %w", method, path, err)
	}
	return resp.StatusCode, out, nil
}

func readProblem(body []byte) problem {
	var p problem
	_ = json.Unmarshal(body, &p) // a body that is no problem leaves the code empty
	return p
}

// InventoryClient calls the inventory service over HTTP.
type InventoryClient struct{ downstream }

// NewInventoryClient returns a client for the inventory service at baseURL
// whose calls go through guard, the policies shared by every caller of
// inventory in the process.
func NewInventoryClient(baseURL string, guard *resilience.Downstream) *InventoryClient {
	return &InventoryClient{newDownstream(baseURL, guard)}
}

type wireItem struct {
	SKU            string `json:"sku"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents,omitempty"`
}

// Reserve reserves stock for every item of the order, all or nothing. Asking
// again for the same order returns the existing reservation.
func (c *InventoryClient) Reserve(ctx context.Context, orderID string, items []Item) (Reservation, error) {
	type request struct {
		OrderID string     `json:"order_id"`
		Items   []wireItem `json:"items"`
	}
	type response struct {
		OrderID  string     `json:"order_id"`
		Status   string     `json:"status"`
		Items    []wireItem `json:"items"`
		Currency string     `json:"currency"`
	}
	req := request{OrderID: orderID, Items: make([]wireItem, len(items))}
	for i, it := range items {
		req.Items[i] = wireItem{SKU: it.SKU, Quantity: it.Quantity}
	}
	// Retried: inventory returns the existing reservation for a repeated order_id.
	status, body, err := c.do(resilience.Idempotent(ctx), http.MethodPost, "/v1/reservations", nil, req)
	if err != nil {
		return Reservation{}, fmt.Errorf("reserve: %w", err)
	}
	switch status {
	case http.StatusOK, http.StatusCreated:
		var r response
		if err := json.Unmarshal(body, &r); err != nil {
			return Reservation{}, fmt.Errorf("reserve: decode answer: %w", err)
		}
		res := Reservation{OrderID: r.OrderID, Status: r.Status, Currency: r.Currency}
		for _, it := range r.Items {
			res.Items = append(res.Items, Item(it))
		}
		return res, nil
	case http.StatusConflict, http.StatusNotFound:
		p := readProblem(body)
		if p.Code == "out_of_stock" || p.Code == "unknown_sku" {
			return Reservation{}, &RejectedError{Code: p.Code, SKUs: p.SKUs}
		}
		return Reservation{}, &StatusError{Op: "reserve", Status: status, Code: p.Code}
	default:
		return Reservation{}, &StatusError{Op: "reserve", Status: status, Code: readProblem(body).Code}
	}
}

// Commit makes the order's reservation permanent.
func (c *InventoryClient) Commit(ctx context.Context, orderID string) error {
	return c.post(ctx, "commit", orderID)
}

// Release returns the order's reserved (or committed) stock. It is
// idempotent, and releasing an unknown order blocks a late reserve.
func (c *InventoryClient) Release(ctx context.Context, orderID string) error {
	return c.post(ctx, "release", orderID)
}

func (c *InventoryClient) post(ctx context.Context, op, orderID string) error {
	// Retried: commit and release are idempotent per order_id.
	status, body, err := c.do(resilience.Idempotent(ctx), http.MethodPost, "/v1/reservations/"+url.PathEscape(orderID)+"/"+op, nil, nil)
	if err != nil {
		return fmt.Errorf("%s reservation: %w", op, err)
	}
	if status != http.StatusOK {
		return &StatusError{Op: op + " reservation", Status: status, Code: readProblem(body).Code}
	}
	return nil
}

// PaymentClient calls the payment service over HTTP.
type PaymentClient struct{ downstream }

// NewPaymentClient returns a client for the payment service at baseURL
// whose calls go through guard, the policies shared by every caller of
// payment in the process.
func NewPaymentClient(baseURL string, guard *resilience.Downstream) *PaymentClient {
	return &PaymentClient{newDownstream(baseURL, guard)}
}

type wirePayment struct {
	ID      string `json:"id"`
	OrderID string `json:"order_id"`
	Status  string `json:"status"`
}

// Capture charges the order's total. The order id is the Idempotency-Key,
// so repeating the call never charges twice.
func (c *PaymentClient) Capture(ctx context.Context, p PaymentRequest) (Payment, error) {
	type request struct {
		OrderID     string `json:"order_id"`
		AmountCents int64  `json:"amount_cents"`
		Currency    string `json:"currency"`
		Method      string `json:"method"`
	}
	h := http.Header{}
	h.Set("Idempotency-Key", p.OrderID)
	// Retried: the Idempotency-Key makes payment replay the first capture.
	status, body, err := c.do(resilience.Idempotent(ctx), http.MethodPost, "/v1/payments", h,
		request{OrderID: p.OrderID, AmountCents: p.AmountCents, Currency: p.Currency, Method: p.Method})
	if err != nil {
		return Payment{}, fmt.Errorf("capture: %w", err)
	}
	switch status {
	case http.StatusOK, http.StatusCreated:
		var w wirePayment
		if err := json.Unmarshal(body, &w); err != nil {
			return Payment{}, fmt.Errorf("capture: decode answer: %w", err)
		}
		if w.ID == "" {
			return Payment{}, fmt.Errorf("capture: answer has no payment id")
		}
		return Payment(w), nil
	case http.StatusPaymentRequired:
		return Payment{}, &DeclinedError{DeclineCode: readProblem(body).DeclineCode}
	default:
		return Payment{}, &StatusError{Op: "capture", Status: status, Code: readProblem(body).Code}
	}
}

// Refund refunds a payment; refunding twice is harmless.
func (c *PaymentClient) Refund(ctx context.Context, paymentID string) error {
	// Retried: refunding a refunded payment changes nothing.
	status, body, err := c.do(resilience.Idempotent(ctx), http.MethodPost, "/v1/payments/"+url.PathEscape(paymentID)+"/refund", nil, nil)
	if err != nil {
		return fmt.Errorf("refund: %w", err)
	}
	if status != http.StatusOK {
		return &StatusError{Op: "refund", Status: status, Code: readProblem(body).Code}
	}
	return nil
}

// ListByOrder returns every payment payment holds for the order, or
// ErrPaymentUnsettled while payment cannot tell yet (a charge's outcome is
// unknown to it). The look-up does not count towards the breaker: it is
// answered from payment's store and says nothing of the captures the
// breaker guards, and its 503 payment_unsettled is an answer, not an outage.
func (c *PaymentClient) ListByOrder(ctx context.Context, orderID string) ([]Payment, error) {
	status, body, err := c.do(resilience.Uncounted(ctx), http.MethodGet, "/v1/payments?order_id="+url.QueryEscape(orderID), nil, nil)
	if err != nil {
		return nil, fmt.Errorf("list payments: %w", err)
	}
	if status != http.StatusOK {
		code := readProblem(body).Code
		if status == http.StatusServiceUnavailable && code == "payment_unsettled" {
			return nil, fmt.Errorf("list payments: %w", ErrPaymentUnsettled)
		}
		return nil, &StatusError{Op: "list payments", Status: status, Code: code}
	}
	var r struct {
		Payments []wirePayment `json:"payments"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("list payments: decode answer: %w", err)
	}
	out := make([]Payment, len(r.Payments))
	for i, p := range r.Payments {
		out[i] = Payment(p)
	}
	return out, nil
}
