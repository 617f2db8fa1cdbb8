// Package indexes proves, with EXPLAIN on a database of realistic volume,
// that every query the order, payment and notification stores issue is
// served by an index. It holds tests only; inventory proves its own queries
// in services/inventory/internal/inventory/indexes_test.go.
package indexes
