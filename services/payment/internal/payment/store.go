package payment

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Store keeps payments and idempotency keys in Postgres.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a store over pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Ping reports whether the database answers, for /readyz.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// claim is the state of an Idempotency-Key after trying to claim it.
type claim struct {
	// Owned is true when this request holds the key and must do the work.
	Owned bool
	// Token fences the claim: completing or releasing it needs the same value.
	Token time.Time
	// Gone is true when the key vanished between the insert and the read
	// (its first request released it): try to claim again.
	Gone bool
	// Hash, Status and Body describe a key held by someone else; a nil
	// Status means still in progress.
	Hash   []byte
	Status *int
	Body   []byte
}

// Claim takes the key for a new request with hash, or reports who holds it.
// A claim older than staleAfter that never completed (its process died) is
// taken over, which is safe because the provider deduplicates charges on the
// same key.
func (s *Store) Claim(ctx context.Context, key string, hash []byte, staleAfter time.Duration) (claim, error) {
	const insert = `
		INSERT INTO idempotency_keys (key, request_hash, created_at)
		VALUES ($1, $2, clock_timestamp())
		ON CONFLICT (key) DO NOTHING
		RETURNING created_at`
	var c claim
	err := s.pool.QueryRow(ctx, insert, key, hash).Scan(&c.Token)
	if err == nil {
		c.Owned = true
		return c, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return c, fmt.Errorf("claim idempotency key: %w", err)
	}

	const takeOver = `
		UPDATE idempotency_keys SET created_at = clock_timestamp()
		WHERE key = $1 AND request_hash = $2 AND status_code IS NULL
		  AND created_at < clock_timestamp() - $3::bigint * interval '1 microsecond'
		RETURNING created_at`
	err = s.pool.QueryRow(ctx, takeOver, key, hash, staleAfter.Microseconds()).Scan(&c.Token)
	if err == nil {
		c.Owned = true
		return c, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return c, fmt.Errorf("take over idempotency key: %w", err)
	}

	const read = `
		SELECT request_hash, status_code, response::text
		FROM idempotency_keys WHERE key = $1`
	var body *string
	err = s.pool.QueryRow(ctx, read, key).Scan(&c.Hash, &c.Status, &body)
	if errors.Is(err, pgx.ErrNoRows) {
		c.Gone = true
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read idempotency key: %w", err)
	}
	if body != nil {
		c.Body = []byte(*body)
	}
	return c, nil
}

// Complete stores the outcome of a claimed key and, when p is not nil, the
// payment, in one statement (so one transaction): a payment never exists
// without its key's response, nor the response without the payment. The
// payment is inserted only when the claim still holds.
func (s *Store) Complete(ctx context.Context, key string, token time.Time, p *Payment, status int, body []byte) error {
	if p == nil {
		const complete = `
			UPDATE idempotency_keys SET status_code = $3, response = $4
			WHERE key = $1 AND created_at = $2 AND status_code IS NULL`
		tag, err := s.pool.Exec(ctx, complete, key, token, status, string(body))
		if err != nil {
			return fmt.Errorf("complete idempotency key: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return errClaimLost
		}
		return nil
	}
	const completeWithPayment = `
		WITH k AS (
			UPDATE idempotency_keys SET status_code = $3, response = $4
			WHERE key = $1 AND created_at = $2 AND status_code IS NULL
			RETURNING key),
		p AS (
			INSERT INTO payments (id, order_id, provider_charge_id, amount_cents, currency, method, status, created_at, updated_at)
			SELECT $5, $6, $7, $8, $9, $10, $11, $12, $13 FROM k)
		SELECT count(*) FROM k`
	var completed int
	if err := s.pool.QueryRow(ctx, completeWithPayment, key, token, status, string(body),
		p.ID, p.OrderID, p.ProviderChargeID, p.AmountCents, p.Currency, p.Method, p.Status,
		p.CreatedAt, p.UpdatedAt).Scan(&completed); err != nil {
		return fmt.Errorf("complete idempotency key with payment: %w", err)
	}
	if completed == 0 {
		return errClaimLost
	}
	return nil
}

// Release deletes an unfinished claim, so the same key may be retried after
// a provider failure.
func (s *Store) Release(ctx context.Context, key string, token time.Time) error {
	const q = `DELETE FROM idempotency_keys WHERE key = $1 AND created_at = $2 AND status_code IS NULL`
	if _, err := s.pool.Exec(ctx, q, key, token); err != nil {
		return fmt.Errorf("release idempotency key: %w", err)
	}
	return nil
}

const paymentColumns = `id::text, order_id::text, provider_charge_id, amount_cents, currency, method, status, created_at, updated_at`

func scanPayment(row pgx.Row) (Payment, error) {
	var p Payment
	err := row.Scan(&p.ID, &p.OrderID, &p.ProviderChargeID, &p.AmountCents, &p.Currency,
		&p.Method, &p.Status, &p.CreatedAt, &p.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, ErrNotFound
	}
	p.CreatedAt, p.UpdatedAt = p.CreatedAt.UTC(), p.UpdatedAt.UTC()
	return p, err
}

// Get returns one payment.
func (s *Store) Get(ctx context.Context, id string) (Payment, error) {
	const q = `SELECT ` + paymentColumns + ` FROM payments WHERE id = $1`
	p, err := scanPayment(s.pool.QueryRow(ctx, q, id))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return p, fmt.Errorf("get payment: %w", err)
	}
	return p, err
}

// ListByOrder returns an order's payments, newest first. An order has a
// handful at most, so the list is capped rather than paginated.
func (s *Store) ListByOrder(ctx context.Context, orderID string) ([]Payment, error) {
	const q = `SELECT ` + paymentColumns + ` FROM payments WHERE order_id = $1
		ORDER BY created_at DESC, id DESC LIMIT 100`
	rows, err := s.pool.Query(ctx, q, orderID)
	if err != nil {
		return nil, fmt.Errorf("list payments: %w", err)
	}
	ps, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Payment, error) { return scanPayment(row) })
	if err != nil {
		return nil, fmt.Errorf("list payments: %w", err)
	}
	return ps, nil
}

// MarkRefunded sets a payment refunded and returns it. Repeating it is
// harmless: the first refund time is kept.
func (s *Store) MarkRefunded(ctx context.Context, id string) (Payment, error) {
	const q = `
		UPDATE payments
		SET status = 'refunded',
		    updated_at = CASE WHEN status = 'refunded' THEN updated_at ELSE now() END
		WHERE id = $1
		RETURNING ` + paymentColumns
	p, err := scanPayment(s.pool.QueryRow(ctx, q, id))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return p, fmt.Errorf("mark payment refunded: %w", err)
	}
	return p, err
}
