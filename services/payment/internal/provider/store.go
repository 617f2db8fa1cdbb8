package provider

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Store keeps the provider's charges and refunds in its own Postgres
// database, so that a restart of the process loses none of them.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a store over pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Ping reports whether the database answers, for /readyz.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

const chargeColumns = `c.id, coalesce(c.idempotency_key, ''), c.amount_cents, c.currency, c.method,
	CASE WHEN r.charge_id IS NULL THEN 'succeeded' ELSE 'refunded' END`

// Insert records a new charge with id, or, when req carries an
// idempotency key that already has one, returns that charge and replayed
// true. A key that comes back with other parameters is ErrKeyReused.
func (s *Store) Insert(ctx context.Context, id string, req ChargeRequest) (c Charge, replayed bool, err error) {
	var key *string
	if req.IdempotencyKey != "" {
		key = &req.IdempotencyKey
	}
	const insert = `
		INSERT INTO charges (id, idempotency_key, amount_cents, currency, method)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (idempotency_key) DO NOTHING`
	tag, err := s.pool.Exec(ctx, insert, id, key, req.AmountCents, req.Currency, req.Method)
	if err != nil {
		return Charge{}, false, fmt.Errorf("insert charge: %w", err)
	}
	if tag.RowsAffected() == 1 {
		return Charge{ID: id, IdempotencyKey: req.IdempotencyKey, AmountCents: req.AmountCents,
			Currency: req.Currency, Method: req.Method, Status: StatusSucceeded}, false, nil
	}
	if key == nil {
		return Charge{}, false, fmt.Errorf("insert charge %s: no row inserted", id)
	}
	// The key has a charge. A new statement, with a new snapshot, sees it
	// even when a concurrent request with the key committed it just now.
	c, err = s.ByKey(ctx, req.IdempotencyKey)
	if err != nil {
		return Charge{}, false, fmt.Errorf("read charge of a repeated key: %w", err)
	}
	if c.AmountCents != req.AmountCents || c.Currency != req.Currency || c.Method != req.Method {
		return Charge{}, false, ErrKeyReused
	}
	return c, true, nil
}

// Get returns one charge.
func (s *Store) Get(ctx context.Context, id string) (Charge, error) {
	const q = `SELECT ` + chargeColumns + `
		FROM charges c LEFT JOIN refunds r ON r.charge_id = c.id
		WHERE c.id = $1`
	return s.queryCharge(ctx, "get charge", q, id)
}

// ByKey returns the charge made with an idempotency key, or ErrNotFound.
func (s *Store) ByKey(ctx context.Context, key string) (Charge, error) {
	const q = `SELECT ` + chargeColumns + `
		FROM charges c LEFT JOIN refunds r ON r.charge_id = c.id
		WHERE c.idempotency_key = $1`
	return s.queryCharge(ctx, "get charge by key", q, key)
}

// queryCharge runs q, which selects chargeColumns of at most one charge;
// what names the read in an error.
func (s *Store) queryCharge(ctx context.Context, what, q string, arg any) (Charge, error) {
	var c Charge
	err := s.pool.QueryRow(ctx, q, arg).Scan(&c.ID, &c.IdempotencyKey, &c.AmountCents, &c.Currency, &c.Method, &c.Status)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Charge{}, ErrNotFound
	case err != nil:
		return Charge{}, fmt.Errorf("%s: %w", what, err)
	}
	return c, nil
}

// Refund records a full refund of the charge, with refundID unless it was
// refunded before (refunding twice is harmless), and returns the charge.
func (s *Store) Refund(ctx context.Context, chargeID, refundID string) (Charge, error) {
	const q = `
		INSERT INTO refunds (id, charge_id, amount_cents)
		SELECT $2, id, amount_cents FROM charges WHERE id = $1
		ON CONFLICT (charge_id) DO NOTHING`
	if _, err := s.pool.Exec(ctx, q, chargeID, refundID); err != nil {
		return Charge{}, fmt.Errorf("refund charge: %w", err)
	}
	return s.Get(ctx, chargeID)
}

// Totals sums the ledger. It reads every row: it is for operators and the
// fault suite's money-conservation check, not for a request path.
func (s *Store) Totals(ctx context.Context) (Totals, error) {
	const q = `
		SELECT (SELECT count(*) FROM charges), (SELECT coalesce(sum(amount_cents), 0) FROM charges),
		       (SELECT count(*) FROM refunds), (SELECT coalesce(sum(amount_cents), 0) FROM refunds)`
	var t Totals
	if err := s.pool.QueryRow(ctx, q).Scan(&t.Charges, &t.CapturedCents, &t.Refunds, &t.RefundedCents); err != nil {
		return Totals{}, fmt.Errorf("sum charges and refunds: %w", err)
	}
	return t, nil
}
