package identity

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/pkg/postgres"
)

// Store keeps customer accounts in Postgres.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a store over pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Ping reports whether the database answers, for /readyz.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Create inserts c and returns it as stored. c.Email must already be
// lower-case; an address another customer has is ErrEmailTaken.
func (s *Store) Create(ctx context.Context, c Customer) (Customer, error) {
	const q = `
		INSERT INTO customers (id, email, name, password_hash)
		VALUES ($1, $2, $3, $4)
		RETURNING created_at`
	err := s.pool.QueryRow(ctx, q, c.ID, c.Email, c.Name, c.PasswordHash).Scan(&c.CreatedAt)
	// Only the e-mail's constraint means the address is taken; a clash of
	// random ids (2^-128) must not be reported as one.
	var pgErr *pgconn.PgError
	if postgres.IsUniqueViolation(err) && errors.As(err, &pgErr) && pgErr.ConstraintName == "customers_email_key" {
		return Customer{}, ErrEmailTaken
	}
	if err != nil {
		return Customer{}, fmt.Errorf("insert customer: %w", err)
	}
	return c, nil
}

// ByEmail returns the customer with the lower-case e-mail address, or
// ErrNotFound. It reads the unique index on email.
func (s *Store) ByEmail(ctx context.Context, email string) (Customer, error) {
	const q = `
		SELECT id, email, name, password_hash, created_at
		FROM customers WHERE email = $1`
	var c Customer
	err := s.pool.QueryRow(ctx, q, email).Scan(&c.ID, &c.Email, &c.Name, &c.PasswordHash, &c.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Customer{}, ErrNotFound
	}
	if err != nil {
		return Customer{}, fmt.Errorf("select customer by email: %w", err)
	}
	return c, nil
}
