// Package notification is Orderflow's notification service: two SQS workers
// turn order events into numbered invoices and real e-mails, each exactly
// once per event however often SQS delivers it, and a small read API shows
// what they produced.
package notification

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/orderflow/orderflow/pkg/events"
)

// Consumer names recorded in processed_events, one per worker, so the same
// event id can be processed once by each of them.
const (
	ConsumerInvoice = "invoice"
	ConsumerEmail   = "email"
)

// E-mail kinds, one per event type that warrants a message to the customer.
const (
	KindOrderConfirmed = "order_confirmed"
	KindPaymentFailed  = "payment_failed"
	KindOrderCancelled = "order_cancelled"
)

// ErrMalformed marks an event that passed events.Decode but that no retry
// can ever process (an id that is not a canonical UUID, control characters
// in an identifier, an unusable e-mail address).
// The consumer treats it like an undecodable body: it goes to the
// dead-letter queue.
var ErrMalformed = errors.New("malformed event")

// ErrNotFound: the caller has no invoice or e-mail for the order.
var ErrNotFound = errors.New("not found")

// Invoice is the numbered invoice created for a confirmed order.
type Invoice struct {
	Number     int64
	OrderID    string
	CustomerID string
	EventID    string
	TotalCents int64
	Currency   string
	Lines      []Line
	CreatedAt  time.Time
}

// Line is one invoice line, copied from the order event's items.
type Line struct {
	SKU            string
	Quantity       int
	UnitPriceCents int64
}

// Email is one message to a customer. SentAt is nil until the SMTP server
// has accepted it.
type Email struct {
	ID         string
	EventID    string
	OrderID    string
	CustomerID string
	To         string
	Subject    string
	Kind       string
	Body       string
	SentAt     *time.Time
}

// KindOf returns the e-mail kind for an event type, or "" when the type
// sends no e-mail.
func KindOf(eventType string) string {
	switch eventType {
	case events.OrderConfirmed:
		return KindOrderConfirmed
	case events.OrderPaymentFailed:
		return KindPaymentFailed
	case events.OrderCancelled:
		return KindOrderCancelled
	}
	return ""
}

// LinesOf copies an event's items into invoice lines.
func LinesOf(items []events.Item) []Line {
	lines := make([]Line, 0, len(items))
	for _, it := range items {
		lines = append(lines, Line{SKU: it.SKU, Quantity: it.Quantity, UnitPriceCents: it.UnitPriceCents})
	}
	return lines
}

// Compose writes the subject and body of the e-mail for e. The text is
// plain and built only from the event, so a redelivery composes the same
// message.
func Compose(e events.Order, kind string) (subject, body string) {
	var b strings.Builder
	switch kind {
	case KindOrderConfirmed:
		subject = "Your order " + e.OrderID + " is confirmed"
		b.WriteString("Thank you for your order. It is confirmed and on its way.\r\n\r\n")
	case KindPaymentFailed:
		subject = "Payment failed for order " + e.OrderID
		b.WriteString("We could not take the payment for your order, so it was not placed.\r\n")
		if e.FailureReason != "" {
			fmt.Fprintf(&b, "Reason: %s\r\n", oneLine(e.FailureReason))
		}
		b.WriteString("\r\n")
	case KindOrderCancelled:
		subject = "Your order " + e.OrderID + " is cancelled"
		b.WriteString("Your order is cancelled. Any payment taken will be refunded.\r\n\r\n")
	}
	fmt.Fprintf(&b, "Order: %s\r\n", e.OrderID)
	for _, it := range e.Items {
		fmt.Fprintf(&b, "  %d x %s at %s\r\n", it.Quantity, oneLine(it.SKU), money(it.UnitPriceCents, e.Currency))
	}
	if e.TotalCents != 0 {
		fmt.Fprintf(&b, "Total: %s\r\n", money(e.TotalCents, e.Currency))
	}
	return subject, b.String()
}

func money(cents int64, currency string) string {
	sign := ""
	if cents < 0 {
		sign, cents = "-", -cents
	}
	return fmt.Sprintf("%s%d.%02d %s", sign, cents/100, cents%100, oneLine(currency))
}

// oneLine strips line breaks from event text placed into the message, so a
// field cannot start a new header or fake the end of the message.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}
