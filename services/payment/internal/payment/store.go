package payment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Store keeps payments, payment intents and idempotency keys in Postgres.
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
	// Token fences the claim: completing, parking or releasing it needs the
	// same value.
	Token time.Time
	// Intent is the key's payment intent, when Owned.
	Intent Intent
	// Fresh is true when this claim wrote the intent: no earlier attempt
	// of it can have charged.
	Fresh bool
	// Gone is true when the key vanished between the insert and the read
	// (its intent was found never charged): try to claim again.
	Gone bool
	// Hash, Answered and Outcome describe a key held by someone else:
	// Outcome is its stored answer when Answered, else it is in progress.
	Hash     []byte
	Answered bool
	Outcome  Outcome
}

// Claim takes the caller's key for a new request with hash, writing in as
// its payment intent in the same statement, or reports who holds it. A
// claim whose request ended with the outcome unknown (parked), or one
// older than staleAfter that never completed (its process died), is taken
// over with the intent it already has: safe, because every attempt sends
// the provider the intent's same ProviderKey and the provider deduplicates
// on it.
func (s *Store) Claim(ctx context.Context, key Key, hash []byte, in Intent, staleAfter time.Duration) (claim, error) {
	const insert = `
		WITH k AS (
			INSERT INTO idempotency_keys (caller, key, request_hash, created_at)
			VALUES ($1, $2, $3, clock_timestamp())
			ON CONFLICT (caller, key) DO NOTHING
			RETURNING caller, key, created_at),
		i AS (
			INSERT INTO payment_intents (caller, key, id, order_id, amount_cents, currency, method, provider_key, state, created_at, updated_at)
			SELECT caller, key, $4, $5, $6, $7, $8, $9, 'pending', created_at, created_at FROM k)
		SELECT created_at FROM k`
	var c claim
	err := s.pool.QueryRow(ctx, insert, key.Caller, key.Value, hash, in.ID, in.OrderID, in.AmountCents, in.Currency,
		in.Method, in.ProviderKey).Scan(&c.Token)
	if err == nil {
		c.Owned, c.Fresh, c.Intent = true, true, in
		c.Intent.Key, c.Intent.Token = key, c.Token
		return c, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return c, fmt.Errorf("claim idempotency key: %w", err)
	}

	const takeOver = `
		UPDATE idempotency_keys SET created_at = clock_timestamp(), parked = false
		WHERE caller = $1 AND key = $2 AND request_hash = $3 AND status_code IS NULL
		  AND (parked OR created_at < clock_timestamp() - $4::bigint * interval '1 microsecond')
		RETURNING created_at`
	err = s.pool.QueryRow(ctx, takeOver, key.Caller, key.Value, hash, staleAfter.Microseconds()).Scan(&c.Token)
	if err == nil {
		c.Owned = true
		c.Intent, err = s.intentOf(ctx, key, in)
		c.Intent.Token = c.Token
		return c, err
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return c, fmt.Errorf("take over idempotency key: %w", err)
	}

	const read = `SELECT request_hash, status_code, response FROM idempotency_keys WHERE caller = $1 AND key = $2`
	var status *int
	var record []byte
	err = s.pool.QueryRow(ctx, read, key.Caller, key.Value).Scan(&c.Hash, &status, &record)
	if errors.Is(err, pgx.ErrNoRows) {
		c.Gone = true
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read idempotency key: %w", err)
	}
	if status != nil {
		c.Answered = true
		c.Outcome, err = decodeOutcome(*status, record)
	}
	return c, err
}

// The status_code column of an answered key: the HTTP status the outcome is
// answered with. The retention index reads it (NULL: not answered).
const (
	keyCaptured = 201
	keyDeclined = 402
)

// declineRecord is a declined capture's outcome in the response column. Its
// member is named as the 402 problem names it, so keys answered before the
// outcome was kept structured, which hold that problem, read the same.
type declineRecord struct {
	DeclineCode string `json:"decline_code"`
}

// encodeOutcome is the status_code and response columns of out. A captured
// payment is kept as the API shows it (paymentResponse), as it was at the
// capture: a replay answers that, whatever happened to the payment since.
func encodeOutcome(out Outcome) (int, []byte, error) {
	status, v := keyCaptured, any(toPaymentResponse(out.Payment))
	if out.DeclineCode != "" {
		status, v = keyDeclined, declineRecord{DeclineCode: out.DeclineCode}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return 0, nil, fmt.Errorf("encode outcome: %w", err)
	}
	return status, b, nil
}

// decodeOutcome is the outcome encodeOutcome stored.
func decodeOutcome(status int, record []byte) (Outcome, error) {
	if status == keyDeclined {
		var d declineRecord
		if err := json.Unmarshal(record, &d); err != nil || d.DeclineCode == "" {
			return Outcome{}, fmt.Errorf("decode declined outcome %q: %w", record, err)
		}
		return Outcome{DeclineCode: d.DeclineCode}, nil
	}
	var p paymentResponse
	if err := json.Unmarshal(record, &p); err != nil {
		return Outcome{}, fmt.Errorf("decode captured outcome: %w", err)
	}
	return Outcome{Payment: p.payment()}, nil
}

// intentOf returns the intent of a claimed key, writing in when it has none
// (a claim left by a version without intents).
func (s *Store) intentOf(ctx context.Context, key Key, in Intent) (Intent, error) {
	const q = `
		INSERT INTO payment_intents (caller, key, id, order_id, amount_cents, currency, method, provider_key, state)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending')
		ON CONFLICT (caller, key) DO UPDATE SET updated_at = now()
		RETURNING id::text, order_id::text, amount_cents, currency, method, provider_key`
	got := Intent{Key: key}
	err := s.pool.QueryRow(ctx, q, key.Caller, key.Value, in.ID, in.OrderID, in.AmountCents, in.Currency, in.Method,
		in.ProviderKey).Scan(&got.ID, &got.OrderID, &got.AmountCents, &got.Currency, &got.Method, &got.ProviderKey)
	if err != nil {
		return Intent{}, fmt.Errorf("read payment intent: %w", err)
	}
	return got, nil
}

// Decline stores a claimed key's declined outcome and marks its intent
// declined, in one statement.
func (s *Store) Decline(ctx context.Context, key Key, token time.Time, declineCode string) error {
	const q = `
		WITH k AS (
			UPDATE idempotency_keys SET status_code = $4, response = $5, parked = false
			WHERE caller = $1 AND key = $2 AND created_at = $3 AND status_code IS NULL
			RETURNING caller, key),
		i AS (
			UPDATE payment_intents SET state = 'declined', updated_at = now()
			WHERE (caller, key) IN (SELECT caller, key FROM k))
		SELECT count(*) FROM k`
	status, record, err := encodeOutcome(Outcome{DeclineCode: declineCode})
	if err != nil {
		return err
	}
	var n int
	if err := s.pool.QueryRow(ctx, q, key.Caller, key.Value, token, status, record).Scan(&n); err != nil {
		return fmt.Errorf("record decline: %w", err)
	}
	if n == 0 {
		return errClaimLost
	}
	return nil
}

// Capture records the captured payment p of a key's intent: the key's
// outcome, the intent captured and the payment row, in one statement (so
// one transaction), so that none exists without the others. With a token
// only that claim may do it (the request that charged); with nil (the
// reconciler, which found the charge at the provider) whoever holds the
// claim, since the provider's charge is the outcome whoever asked. It is
// errClaimLost when the key was answered meanwhile.
func (s *Store) Capture(ctx context.Context, key Key, token *time.Time, p Payment) error {
	const q = `
		WITH k AS (
			UPDATE idempotency_keys SET status_code = $4, response = $5, parked = false
			WHERE caller = $1 AND key = $2 AND status_code IS NULL AND ($3::timestamptz IS NULL OR created_at = $3)
			RETURNING caller, key),
		i AS (
			UPDATE payment_intents SET state = 'captured', provider_charge_id = $8, updated_at = $14
			WHERE (caller, key) IN (SELECT caller, key FROM k)),
		p AS (
			INSERT INTO payments (id, order_id, provider_charge_id, amount_cents, currency, method, status, created_at, updated_at)
			SELECT $6, $7, $8, $9, $10, $11, $12, $13, $14 FROM k)
		SELECT count(*) FROM k`
	status, record, err := encodeOutcome(Outcome{Payment: p})
	if err != nil {
		return err
	}
	var n int
	if err := s.pool.QueryRow(ctx, q, key.Caller, key.Value, token, status, record,
		p.ID, p.OrderID, p.ProviderChargeID, p.AmountCents, p.Currency, p.Method, p.Status,
		p.CreatedAt, p.UpdatedAt).Scan(&n); err != nil {
		return fmt.Errorf("record captured payment: %w", err)
	}
	if n == 0 {
		return errClaimLost
	}
	return nil
}

// Park marks a claim whose request ended without knowing the outcome: the
// key and its pending intent stay, and a retry takes the claim over at once.
func (s *Store) Park(ctx context.Context, key Key, token time.Time) error {
	const q = `
		UPDATE idempotency_keys SET parked = true
		WHERE caller = $1 AND key = $2 AND created_at = $3 AND status_code IS NULL`
	if _, err := s.pool.Exec(ctx, q, key.Caller, key.Value, token); err != nil {
		return fmt.Errorf("park idempotency key: %w", err)
	}
	return nil
}

// Release deletes an unanswered claim and, by cascade, its intent, so the
// key may be used again. Only for a charge that certainly did not happen.
// It reports whether the claim was still there under token.
func (s *Store) Release(ctx context.Context, key Key, token time.Time) (bool, error) {
	const q = `DELETE FROM idempotency_keys WHERE caller = $1 AND key = $2 AND created_at = $3 AND status_code IS NULL`
	tag, err := s.pool.Exec(ctx, q, key.Caller, key.Value, token)
	if err != nil {
		return false, fmt.Errorf("release idempotency key: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// intentColumns are read with the claim's token and whether its latest
// attempt is older than the grace period ($1, in microseconds).
const intentColumns = `i.caller, i.key, i.id::text, i.order_id::text, i.amount_cents, i.currency, i.method,
	i.provider_key, k.created_at, k.created_at < clock_timestamp() - $1::bigint * interval '1 microsecond'`

// PendingForOrder returns the order's intents whose outcome is unknown,
// each with whether it is older than grace.
func (s *Store) PendingForOrder(ctx context.Context, orderID string, grace time.Duration) ([]Intent, error) {
	const q = `SELECT ` + intentColumns + `
		FROM payment_intents i JOIN idempotency_keys k ON (k.caller, k.key) = (i.caller, i.key)
		WHERE i.order_id = $2 AND i.state = 'pending' AND k.status_code IS NULL
		LIMIT 100`
	return s.queryIntents(ctx, "list pending intents of order", q, grace.Microseconds(), orderID)
}

// Pending returns up to limit intents whose outcome is unknown and whose
// latest attempt began longer than grace ago, oldest first.
func (s *Store) Pending(ctx context.Context, grace time.Duration, limit int) ([]Intent, error) {
	const q = `SELECT ` + intentColumns + `
		FROM payment_intents i JOIN idempotency_keys k ON (k.caller, k.key) = (i.caller, i.key)
		WHERE i.state = 'pending' AND k.status_code IS NULL
		  AND k.created_at < clock_timestamp() - $1::bigint * interval '1 microsecond'
		ORDER BY k.created_at
		LIMIT $2`
	return s.queryIntents(ctx, "list pending intents", q, grace.Microseconds(), limit)
}

// queryIntents runs q, which selects intentColumns, and reads its rows;
// what names the read in an error.
func (s *Store) queryIntents(ctx context.Context, what, q string, args ...any) ([]Intent, error) {
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	ins, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Intent, error) {
		var in Intent
		err := row.Scan(&in.Key.Caller, &in.Key.Value, &in.ID, &in.OrderID, &in.AmountCents, &in.Currency,
			&in.Method, &in.ProviderKey, &in.Token, &in.Ripe)
		return in, err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return ins, nil
}

// PurgeKeys deletes at most limit answered keys claimed before before,
// oldest first, with their settled intents, and returns how many went. A
// key without an answer (an intent whose outcome is unknown) is never
// deleted; payments are kept for good. SKIP LOCKED, so it never waits on a
// request holding a key. The rows are matched by ctid, which the batch's
// row locks keep stable until the statement ends: matched by (caller, key)
// the planner hashes the batch and scans the whole table for it.
func (s *Store) PurgeKeys(ctx context.Context, before time.Time, limit int) (int64, error) {
	const q = `
		DELETE FROM idempotency_keys WHERE ctid IN (
			SELECT ctid FROM idempotency_keys
			WHERE status_code IS NOT NULL AND created_at < $1
			ORDER BY created_at
			LIMIT $2
			FOR UPDATE SKIP LOCKED)`
	tag, err := s.pool.Exec(ctx, q, before, limit)
	if err != nil {
		return 0, fmt.Errorf("purge idempotency keys: %w", err)
	}
	return tag.RowsAffected(), nil
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
