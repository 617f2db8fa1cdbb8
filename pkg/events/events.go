// Package events holds the contracts of the messages Orderflow services send
// each other over SQS. They are plain structs: the producer (order's outbox
// relay) and the consumers (notification's workers) share only this.
package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Event types: one per order status change that has an effect downstream.
const (
	OrderConfirmed     = "order.confirmed"
	OrderPaymentFailed = "order.payment_failed"
	OrderCancelled     = "order.cancelled"
)

// Order is the body of every message on the order-invoices and order-emails
// queues. ID identifies the event (not the order): consumers record it to
// process each event exactly once, however often it is delivered.
type Order struct {
	ID            string    `json:"id"`
	Type          string    `json:"type"`
	OrderID       string    `json:"order_id"`
	CustomerID    string    `json:"customer_id"`
	Email         string    `json:"email,omitempty"`
	Status        string    `json:"status"`
	Items         []Item    `json:"items"`
	TotalCents    int64     `json:"total_cents"`
	Currency      string    `json:"currency"`
	FailureReason string    `json:"failure_reason,omitempty"`
	OccurredAt    time.Time `json:"occurred_at"`
}

// Item is one order line as priced by inventory.
type Item struct {
	SKU            string `json:"sku"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

// Decode parses and validates a message body. A body that fails here is a
// poison message: retrying it cannot help.
func Decode(body []byte) (Order, error) {
	var e Order
	if err := json.Unmarshal(body, &e); err != nil {
		return Order{}, fmt.Errorf("decode order event: %w", err)
	}
	if err := e.Validate(); err != nil {
		return Order{}, err
	}
	return e, nil
}

// Validate reports what is missing or wrong in e.
func (e Order) Validate() error {
	var errs []error
	if e.ID == "" {
		errs = append(errs, errors.New("id is empty"))
	}
	if e.OrderID == "" {
		errs = append(errs, errors.New("order_id is empty"))
	}
	switch e.Type {
	case OrderConfirmed, OrderPaymentFailed, OrderCancelled:
	default:
		errs = append(errs, fmt.Errorf("unknown type %q", e.Type))
	}
	if e.OccurredAt.IsZero() {
		errs = append(errs, errors.New("occurred_at is missing"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid order event: %w", err)
	}
	return nil
}
