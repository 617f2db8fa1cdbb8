package notification

import (
	"context"
	"fmt"
	"log/slog"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/pkg/auth"
	"github.com/orderflow/orderflow/pkg/events"
)

// Service holds the workers' use cases (one per queue) and the reads.
type Service struct {
	store  *Store
	mailer *Mailer
	log    *slog.Logger
}

// NewService returns a Service over store that sends e-mail with mailer.
func NewService(store *Store, mailer *Mailer, log *slog.Logger) *Service {
	return &Service{store: store, mailer: mailer, log: log}
}

// checkEvent rejects an event the database cannot store or could read as
// another id: ids not in canonical UUID form (uuid.Parse takes "(…)",
// which PostgreSQL refuses), control characters in an identifier, a NUL in
// the failure reason. Retrying it would fail the same way every time.
func checkEvent(e events.Order) error {
	for field, v := range map[string]string{"event id": e.ID, "order_id": e.OrderID} {
		if u, err := uuid.Parse(v); err != nil || u.String() != v {
			return fmt.Errorf("%w: %s %q is not a UUID in canonical form", ErrMalformed, field, v)
		}
	}
	idents := map[string]string{"customer_id": e.CustomerID, "email": e.Email, "status": e.Status, "currency": e.Currency}
	for i, it := range e.Items {
		idents[fmt.Sprintf("items[%d].sku", i)] = it.SKU
	}
	for field, v := range idents {
		if !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl) {
			return fmt.Errorf("%w: %s %q holds control characters", ErrMalformed, field, v)
		}
	}
	if strings.ContainsRune(e.FailureReason, 0) {
		return fmt.Errorf("%w: failure_reason holds a NUL", ErrMalformed)
	}
	return nil
}

// HandleInvoice is the invoice worker's handler: an order.confirmed event
// becomes one numbered invoice, however often it is delivered. Other event
// types carry nothing to invoice. A nil error means the message may be
// deleted.
func (s *Service) HandleInvoice(ctx context.Context, e events.Order) error {
	if e.Type != events.OrderConfirmed {
		return nil
	}
	if err := checkEvent(e); err != nil {
		return err
	}
	inv, created, err := s.store.CreateInvoice(ctx, Invoice{
		OrderID:    e.OrderID,
		CustomerID: e.CustomerID,
		EventID:    e.ID,
		TotalCents: e.TotalCents,
		Currency:   e.Currency,
		Lines:      LinesOf(e.Items),
	})
	if err != nil {
		return err
	}
	if created {
		s.log.InfoContext(ctx, "invoice created", "number", inv.Number, "order_id", e.OrderID, "event_id", e.ID)
	} else {
		s.log.InfoContext(ctx, "invoice already created for event", "order_id", e.OrderID, "event_id", e.ID)
	}
	return nil
}

// HandleEmail is the e-mail worker's handler: it sends the customer the
// e-mail for the event once (see Store.SendEmailOnce for the one duplicate
// SMTP cannot rule out). An event without an address has nothing to send
// and succeeds, so its message is deleted; an SMTP failure is returned, so
// the message stays and comes back after its visibility timeout.
func (s *Service) HandleEmail(ctx context.Context, e events.Order) error {
	kind := KindOf(e.Type)
	if kind == "" {
		return nil
	}
	if err := checkEvent(e); err != nil {
		return err
	}
	if e.Email == "" {
		s.log.InfoContext(ctx, "event has no e-mail address; nothing to send",
			"order_id", e.OrderID, "event_id", e.ID, "type", e.Type)
		return nil
	}
	addr, err := mail.ParseAddress(e.Email)
	if err != nil {
		return fmt.Errorf("%w: e-mail address %q: %v", ErrMalformed, e.Email, err)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("new email id: %w", err)
	}
	subject, body := Compose(e, kind)
	em := Email{
		ID:         id.String(),
		EventID:    e.ID,
		OrderID:    e.OrderID,
		CustomerID: e.CustomerID,
		To:         addr.Address,
		Subject:    subject,
		Kind:       kind,
		Body:       body,
	}
	sent, err := s.store.SendEmailOnce(ctx, em, s.mailer.Send)
	if err != nil {
		return err
	}
	if sent {
		s.log.InfoContext(ctx, "e-mail sent", "kind", kind, "order_id", e.OrderID, "event_id", e.ID)
	} else {
		s.log.InfoContext(ctx, "e-mail already sent for event", "kind", kind, "order_id", e.OrderID, "event_id", e.ID)
	}
	return nil
}

// Invoices returns the invoices of an order for caller; orderID must be a
// UUID. An operator sees every invoice, a customer only their own
// (readOwn).
func (s *Service) Invoices(ctx context.Context, caller auth.Principal, orderID string) ([]Invoice, error) {
	return readOwn(caller, func(customer string) ([]Invoice, error) {
		return s.store.InvoicesByOrder(ctx, orderID, customer)
	})
}

// SentEmails returns the e-mails sent for an order, for caller as Invoices
// does; orderID must be a UUID.
func (s *Service) SentEmails(ctx context.Context, caller auth.Principal, orderID string) ([]Email, error) {
	return readOwn(caller, func(customer string) ([]Email, error) {
		return s.store.SentEmailsByOrder(ctx, orderID, customer)
	})
}

// readOwn reads the rows caller may see: read gets the customer to filter
// by, "" (all) for an operator, else the token's subject. A customer who
// has none gets ErrNotFound, whether the order has none yet or belongs to
// someone else: the answer never tells another customer's order exists. A
// caller who is neither reads nothing (ErrNotFound), never the empty
// filter, which is everyone's.
func readOwn[T any](caller auth.Principal, read func(customer string) ([]T, error)) ([]T, error) {
	var customer string
	switch {
	case caller.IsAdmin():
	case caller.Subject == "":
		return nil, ErrNotFound
	default:
		customer = caller.Subject
	}
	rows, err := read(customer)
	if err == nil && len(rows) == 0 && customer != "" {
		return nil, ErrNotFound
	}
	return rows, err
}

// Ready reports whether the database answers.
func (s *Service) Ready(ctx context.Context) error { return s.store.Ping(ctx) }
