// Package order is the order service: the orders API, idempotency keys on
// order creation, and the saga that reserves stock, takes the payment and
// confirms the order, compensating (release, refund) when a step fails and
// recovering sagas that a crash left half done.
package order

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode"
)

// Order statuses. pending is the only status a saga moves away from; every
// other one is final except confirmed, which a cancel moves to cancelled.
const (
	StatusPending       = "pending"
	StatusConfirmed     = "confirmed"
	StatusRejected      = "rejected"
	StatusPaymentFailed = "payment_failed"
	StatusFailed        = "failed"
	StatusCancelled     = "cancelled"
)

// Failure reasons the saga records besides the codes inventory and payment
// return (out_of_stock, unknown_sku, a decline code).
const (
	ReasonInventoryUnavailable = "inventory_unavailable"
	ReasonPaymentUnavailable   = "payment_unavailable"
	ReasonSagaTimeout          = "saga_timeout"
)

// Limits of the API: a create-order request, list pages, and the currency
// used until inventory names one.
const (
	MaxItems        = 50
	MaxQuantity     = 1000
	MaxIDLength     = 64
	MaxKeyLength    = 255
	DefaultLimit    = 20
	MaxLimit        = 100
	DefaultCurrency = "USD"
)

// Sentinel errors the handler maps to problems (writeError).
var (
	ErrNotFound       = errors.New("order not found")
	ErrNotCancellable = errors.New("order not cancellable")
	ErrBadCursor      = errors.New("bad cursor")
	// ErrCustomerMismatch: the caller named a customer other than itself.
	ErrCustomerMismatch = errors.New("customer is not the caller")
	// ErrCustomerRequired: an operator's list names no customer.
	ErrCustomerRequired = errors.New("customer_id is required")
	// ErrNoCompensation: the order has no compensation outstanding (none
	// was needed, or it is done), so there is nothing to retry.
	ErrNoCompensation = errors.New("order has no outstanding compensation")
	// ErrUnavailable: inventory or payment was unavailable (timeout,
	// breaker open), so the order failed; the same Idempotency-Key may be
	// retried.
	ErrUnavailable = errors.New("a dependency of the order is unavailable")
	// ErrPaymentUnsettled: payment cannot list an order's payments yet
	// because a charge's outcome is still unknown to it (its 503
	// payment_unsettled); it settles the charge with the provider
	// meanwhile. Ask again shortly: it is no failure.
	ErrPaymentUnsettled = errors.New("a payment of the order is not settled yet")
	// ErrKeyReused: the Idempotency-Key was used with another request body.
	ErrKeyReused = errors.New("idempotency key used with another request")
	// ErrInProgress: the request that owns the Idempotency-Key still runs.
	ErrInProgress = errors.New("request with this idempotency key still running")
	// errLostRace means a conditional status update found the order in
	// another status: the recovery loop (or a concurrent cancel) won.
	errLostRace = errors.New("order changed status concurrently")
)

// Order is an order as stored. Email, PaymentID and FailureReason are empty
// when absent.
type Order struct {
	ID            string
	CustomerID    string
	Email         string
	Status        string
	PaymentMethod string
	Items         []Item
	TotalCents    int64
	Currency      string
	PaymentID     string
	FailureReason string
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// Compensation is an order whose compensation (release the reservation,
// refund captured payments) is outstanding, as an operator sees it.
type Compensation struct {
	OrderID string
	// Status is the order's (final) status: failed, payment_failed, cancelled…
	Status string
	// Attempts counts the recovery loop's failed attempts since the last
	// operator retry.
	Attempts int
	// LastError is what the last failed attempt reported, empty before one.
	LastError string
	// NeedsAttentionSince is when the loop gave up retrying on its own
	// (after Config.CompensationMaxAttempts failures); zero while it still
	// retries.
	NeedsAttentionSince time.Time
}

// Item is one order line. UnitPriceCents is 0 until inventory has priced it.
type Item struct {
	SKU            string
	Quantity       int
	UnitPriceCents int64
}

// CreateRequest is what a client asks for in POST /v1/orders.
type CreateRequest struct {
	CustomerID    string
	Email         string
	Items         []ItemRequest
	PaymentMethod string
}

// ItemRequest is one requested line: inventory owns the price.
type ItemRequest struct {
	SKU      string
	Quantity int
}

// Validate returns a field→problem map, empty when r is acceptable. Field
// names are those of the JSON body, items indexed as items[2].quantity.
func (r CreateRequest) Validate() map[string]string {
	problems := map[string]string{}
	// CustomerID is optional: the caller's token says who the customer is.
	switch {
	case len(r.CustomerID) > MaxIDLength:
		problems["customer_id"] = fmt.Sprintf("must be at most %d characters", MaxIDLength)
	case hasControl(r.CustomerID):
		problems["customer_id"] = "must not contain control characters"
	}
	if r.Email != "" && !validEmail(r.Email) {
		problems["email"] = "must be an e-mail address such as a@example.com"
	}
	switch {
	case len(r.Items) == 0:
		problems["items"] = "must hold at least one item"
	case len(r.Items) > MaxItems:
		problems["items"] = fmt.Sprintf("must hold at most %d items", MaxItems)
	}
	seen := make(map[string]int, len(r.Items))
	for i, it := range r.Items {
		if i >= MaxItems {
			break
		}
		switch {
		case it.SKU == "":
			problems[fmt.Sprintf("items[%d].sku", i)] = "is required"
		case len(it.SKU) > MaxIDLength:
			problems[fmt.Sprintf("items[%d].sku", i)] = fmt.Sprintf("must be at most %d characters", MaxIDLength)
		case hasControl(it.SKU):
			problems[fmt.Sprintf("items[%d].sku", i)] = "must not contain control characters"
		default:
			if j, dup := seen[it.SKU]; dup {
				problems[fmt.Sprintf("items[%d].sku", i)] = fmt.Sprintf("duplicates items[%d].sku", j)
			} else {
				seen[it.SKU] = i
			}
		}
		if it.Quantity < 1 || it.Quantity > MaxQuantity {
			problems[fmt.Sprintf("items[%d].quantity", i)] = fmt.Sprintf("must be between 1 and %d", MaxQuantity)
		}
	}
	switch {
	case r.PaymentMethod == "":
		problems["payment_method"] = "is required"
	case len(r.PaymentMethod) > MaxIDLength:
		problems["payment_method"] = fmt.Sprintf("must be at most %d characters", MaxIDLength)
	case hasControl(r.PaymentMethod):
		problems["payment_method"] = "must not contain control characters"
	}
	return problems
}

// hasControl reports control characters, which no identifier needs and
// Postgres text cannot hold (NUL).
func hasControl(s string) bool {
	return strings.IndexFunc(s, unicode.IsControl) >= 0
}

// validEmail accepts a bare address (no display name, no angle brackets) of
// a sensible length.
func validEmail(s string) bool {
	if len(s) > 254 {
		return false
	}
	a, err := mail.ParseAddress(s)
	return err == nil && !hasControl(s) && a.Name == "" && a.Address == s
}

// hash identifies a request's content independently of its JSON spelling
// (whitespace, key order): the SHA-256 of the decoded request re-marshalled.
// Two requests with one Idempotency-Key must have the same hash.
func (r CreateRequest) hash() []byte {
	b, err := json.Marshal(r)
	if err != nil {
		// A struct of strings and ints always marshals.
		panic(fmt.Sprintf("marshal create request: %v", err))
	}
	sum := sha256.Sum256(b)
	return sum[:]
}

// Outcome is how a create-order request ended: the order in its final
// status. It is kept with the idempotency key, in the transaction that
// writes that status, and the handler renders the first answer and every
// replay from it alike. Status confirmed is a success; rejected has
// inventory's code as FailureReason and SKUs; payment_failed has the decline
// code; failed means a dependency was unavailable, and only the order's id
// is kept.
type Outcome struct {
	Order Order
	// SKUs are the SKUs inventory refused, for a rejected order.
	SKUs []string
}

// Err is the outcome as the error the client is answered with: nil for a
// confirmed order, else an *OrderError wrapping a *RejectedError, a
// *DeclinedError or ErrUnavailable.
func (o Outcome) Err() error {
	var err error
	switch o.Order.Status {
	case StatusConfirmed:
		return nil
	case StatusRejected:
		err = &RejectedError{Code: o.Order.FailureReason, SKUs: o.SKUs}
	case StatusPaymentFailed:
		err = &DeclinedError{DeclineCode: o.Order.FailureReason}
	default:
		err = ErrUnavailable
	}
	return &OrderError{OrderID: o.Order.ID, Err: err}
}

// OrderError is a failure of a request that stored an order: the client is
// told the order's id, to look it up.
type OrderError struct {
	OrderID string
	Err     error
}

// Error names the order and the failure.
func (e *OrderError) Error() string { return "order " + e.OrderID + ": " + e.Err.Error() }

// Unwrap returns the failure.
func (e *OrderError) Unwrap() error { return e.Err }

// RejectedError is inventory's 409: nothing was reserved because some SKUs
// are out of stock or unknown.
type RejectedError struct {
	Code string // out_of_stock or unknown_sku
	SKUs []string
}

// Error describes the rejection.
func (e *RejectedError) Error() string {
	return fmt.Sprintf("reservation rejected: %s %v", e.Code, e.SKUs)
}

// DeclinedError is payment's 402: the provider declined the card.
type DeclinedError struct {
	DeclineCode string
}

// Error describes the decline.
func (e *DeclinedError) Error() string { return "payment declined: " + e.DeclineCode }

// Reservation is inventory's answer to a reserve call.
type Reservation struct {
	OrderID  string
	Status   string // reserved, committed, released or expired
	Items    []Item
	Currency string
}

// Usable reports whether the reservation holds stock for the order.
func (r Reservation) Usable() bool { return r.Status == "reserved" || r.Status == "committed" }

// PaymentRequest asks payment to capture an order's total.
type PaymentRequest struct {
	OrderID     string
	AmountCents int64
	Currency    string
	Method      string
}

// Payment is a payment as payment reports it.
type Payment struct {
	ID      string
	OrderID string
	Status  string // captured or refunded
}
