package notification

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Store keeps invoices, e-mails and the processed-events ledger in the
// notification database.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a Store on pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// lineJSON is the jsonb shape of an invoice line; it is the API's shape too.
type lineJSON struct {
	SKU            string `json:"sku"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

// CreateInvoice records inv.EventID for the invoice consumer and, when the
// event is new, numbers and inserts the invoice, all in one transaction. It
// reports whether it created the invoice; false means an earlier delivery
// of the event already did. A concurrent delivery of the same event blocks
// on the ledger's primary key until this transaction ends, then finds the
// row. The number comes from invoice_counter, whose row lock serialises
// invoices and whose increment a rollback undoes, so numbers have no gaps.
func (s *Store) CreateInvoice(ctx context.Context, inv Invoice) (Invoice, bool, error) {
	// One statement, so one transaction and one round trip: the counter's
	// row lock, which every invoice queues for, is held for that statement
	// only. Each step runs only when the one before it wrote a row.
	const create = `WITH recorded AS (
			INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2)
			ON CONFLICT (consumer, event_id) DO NOTHING
			RETURNING event_id),
		numbered AS (
			UPDATE invoice_counter SET last = last + 1
			WHERE EXISTS (SELECT 1 FROM recorded)
			RETURNING last)
		INSERT INTO invoices (number, order_id, event_id, total_cents, currency, lines, customer_id)
		SELECT numbered.last, $3, $2, $4, $5, $6, $7 FROM numbered
		RETURNING number, created_at`
	lines := make([]lineJSON, 0, len(inv.Lines))
	for _, l := range inv.Lines {
		lines = append(lines, lineJSON(l))
	}
	err := s.pool.QueryRow(ctx, create, ConsumerInvoice, inv.EventID, inv.OrderID,
		inv.TotalCents, inv.Currency, lines, inv.CustomerID).Scan(&inv.Number, &inv.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return inv, false, nil // an earlier delivery recorded the event
	}
	if err != nil {
		return Invoice{}, false, fmt.Errorf("create invoice: %w", err)
	}
	return inv, true, nil
}

// SendEmailOnce sends em at most once per event id, as far as SMTP allows.
// In one transaction it inserts the e-mail row (or finds the one an earlier
// delivery wrote) and locks it with SELECT ... FOR UPDATE, so concurrent
// deliveries of the event queue up behind each other. A row with sent_at
// set means the e-mail went out already: nothing to do. Otherwise it calls
// send, and only when the SMTP server has accepted the message sets
// sent_at, records the event in processed_events and commits. A failed send
// rolls everything back and returns the error, so the message is retried.
//
// The one remaining window: the process dies (or the commit fails) after
// the SMTP server accepted DATA and before the commit. The row is then still
// unsent, the SQS message comes back after its visibility timeout, and the
// customer gets the e-mail a second time. No protocol closes that window
// (SMTP has no two-phase commit); the Message-ID derived from the event id
// makes the duplicate identical, so a receiver that dedupes on it drops it.
//
// It reports whether this call sent the e-mail.
func (s *Store) SendEmailOnce(ctx context.Context, em Email, send func(context.Context, Email) error) (bool, error) {
	const insert = `INSERT INTO emails (id, event_id, order_id, "to", subject, kind, body, customer_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (event_id) DO NOTHING`
	const lock = `SELECT sent_at FROM emails WHERE event_id = $1 FOR UPDATE`
	const markSent = `UPDATE emails SET sent_at = now() WHERE event_id = $1`
	const record = `INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2)
		ON CONFLICT (consumer, event_id) DO NOTHING`
	sent := false
	// The statements before the send and those after it each go out as
	// one batch: two round trips inside the transaction instead of four.
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var b pgx.Batch
		b.Queue(insert, em.ID, em.EventID, em.OrderID, em.To, em.Subject, em.Kind, em.Body, em.CustomerID)
		var sentAt *time.Time
		b.Queue(lock, em.EventID).QueryRow(func(row pgx.Row) error { return row.Scan(&sentAt) })
		if err := tx.SendBatch(ctx, &b).Close(); err != nil {
			return fmt.Errorf("insert and lock email: %w", err)
		}
		if sentAt != nil {
			return nil
		}
		if err := send(ctx, em); err != nil {
			return err
		}
		var done pgx.Batch
		done.Queue(markSent, em.EventID)
		done.Queue(record, ConsumerEmail, em.EventID)
		if err := tx.SendBatch(ctx, &done).Close(); err != nil {
			return fmt.Errorf("mark email sent: %w", err)
		}
		sent = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("send email once: %w", err)
	}
	return sent, nil
}

// InvoicesByOrder returns the invoices of an order, lowest number first;
// only customerID's when it is not empty.
func (s *Store) InvoicesByOrder(ctx context.Context, orderID, customerID string) ([]Invoice, error) {
	const q = `SELECT number, order_id::text, customer_id, event_id::text, total_cents, currency, lines, created_at
		FROM invoices WHERE order_id = $1 AND ($2 = '' OR customer_id = $2) ORDER BY number`
	rows, err := s.pool.Query(ctx, q, orderID, customerID)
	if err != nil {
		return nil, fmt.Errorf("query invoices: %w", err)
	}
	invs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Invoice, error) {
		var inv Invoice
		var lines []lineJSON
		err := row.Scan(&inv.Number, &inv.OrderID, &inv.CustomerID, &inv.EventID, &inv.TotalCents, &inv.Currency, &lines, &inv.CreatedAt)
		inv.Lines = make([]Line, 0, len(lines))
		for _, l := range lines {
			inv.Lines = append(inv.Lines, Line(l))
		}
		return inv, err
	})
	if err != nil {
		return nil, fmt.Errorf("read invoices: %w", err)
	}
	return invs, nil
}

// SentEmailsByOrder returns the e-mails of an order that the SMTP server
// accepted, oldest first. Rows still waiting for a send are left out: they
// may yet be rolled back. Only customerID's when it is not empty.
func (s *Store) SentEmailsByOrder(ctx context.Context, orderID, customerID string) ([]Email, error) {
	const q = `SELECT id::text, event_id::text, order_id::text, customer_id, "to", subject, kind, body, sent_at
		FROM emails WHERE order_id = $1 AND sent_at IS NOT NULL AND ($2 = '' OR customer_id = $2)
		ORDER BY sent_at, id`
	rows, err := s.pool.Query(ctx, q, orderID, customerID)
	if err != nil {
		return nil, fmt.Errorf("query emails: %w", err)
	}
	ems, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Email, error) {
		var em Email
		err := row.Scan(&em.ID, &em.EventID, &em.OrderID, &em.CustomerID, &em.To, &em.Subject, &em.Kind, &em.Body, &em.SentAt)
		return em, err
	})
	if err != nil {
		return nil, fmt.Errorf("read emails: %w", err)
	}
	return ems, nil
}

// Ping reports whether the database answers, for /readyz.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping database: %w", err)
	}
	return nil
}

// ProcessedRetention is how long a processed event's id is kept: 14 days,
// the longest an SQS queue keeps a message, so no redelivery can come later.
const ProcessedRetention = 14 * 24 * time.Hour

// PurgeProcessed deletes at most limit processed-event ids recorded before
// before, oldest first (the idempotent consumers' ledger: see
// ProcessedRetention).
func (s *Store) PurgeProcessed(ctx context.Context, before time.Time, limit int) (int64, error) {
	const q = `
DELETE FROM processed_events WHERE (consumer, event_id) IN (
    SELECT consumer, event_id FROM processed_events
    WHERE processed_at < $1
    ORDER BY processed_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED)`
	tag, err := s.pool.Exec(ctx, q, before, limit)
	if err != nil {
		return 0, fmt.Errorf("purge processed events: %w", err)
	}
	return tag.RowsAffected(), nil
}
