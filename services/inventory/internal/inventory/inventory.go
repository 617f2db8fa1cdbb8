// Package inventory owns Orderflow's catalogue and stock: products with their
// prices, and reservations that hold stock for an order until the order is
// committed, released, or the reservation expires.
package inventory

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Reservation statuses. Only a reserved reservation holds stock that the
// sweeper may return; a committed one holds stock until it is released.
const (
	StatusReserved  = "reserved"
	StatusCommitted = "committed"
	StatusReleased  = "released"
	StatusExpired   = "expired"
)

// Limits of the API contract, shared by validation and tests.
const (
	MaxItems       = 50
	MaxQuantity    = 1000
	MaxSKULength   = 64
	MaxStock       = 1_000_000_000
	DefaultLimit   = 20
	MaxLimit       = 100
	SweepBatchSize = 500
)

// Sentinel errors; the handler maps each to a status code.
var (
	// ErrNotFound means the product or reservation does not exist.
	ErrNotFound = errors.New("not found")
	// ErrReservationNotActive means a commit reached a reservation that was
	// already released or expired, so its stock is no longer held.
	ErrReservationNotActive = errors.New("reservation is not active")
	// ErrBadCursor means a pagination cursor was not one this service issued.
	ErrBadCursor = errors.New("bad cursor")
)

// Codes of StockError, part of the API contract.
const (
	CodeUnknownSKU = "unknown_sku"
	CodeOutOfStock = "out_of_stock"
)

// StockError rejects a whole reservation: Code says why and SKUs lists every
// sku at fault, so a client can fix its cart in one round trip.
type StockError struct {
	Code string
	SKUs []string
}

// Error describes the rejection, for logs.
func (e *StockError) Error() string {
	return fmt.Sprintf("%s: %s", e.Code, strings.Join(e.SKUs, ", "))
}

// Product is one catalogue entry with its current stock.
type Product struct {
	SKU        string
	Name       string
	PriceCents int64
	Currency   string
	Available  int
}

// Item is one requested line of a reservation.
type Item struct {
	SKU      string
	Quantity int
}

// ReservedItem is one line of a reservation with the price it was reserved at,
// so order totals do not change when a price changes later.
type ReservedItem struct {
	SKU            string
	Quantity       int
	UnitPriceCents int64
}

// Reservation is the stock held for one order.
type Reservation struct {
	OrderID   uuid.UUID
	Status    string
	Items     []ReservedItem
	ExpiresAt time.Time
}

// ParseOrderID accepts only the canonical 36-character UUID form, so the same
// order is never known under two spellings.
func ParseOrderID(s string) (uuid.UUID, error) {
	if len(s) != 36 {
		return uuid.Nil, errors.New("must be a UUID")
	}
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, errors.New("must be a UUID")
	}
	return id, nil
}

// ValidateItems returns a field→problem map for the items of a reservation
// request (empty when they are valid).
func ValidateItems(items []Item) map[string]string {
	problems := map[string]string{}
	if len(items) < 1 || len(items) > MaxItems {
		problems["items"] = fmt.Sprintf("must hold 1 to %d items", MaxItems)
		if len(items) > MaxItems {
			return problems
		}
	}
	seen := make(map[string]bool, len(items))
	for i, it := range items {
		switch {
		case it.SKU == "":
			problems[fmt.Sprintf("items[%d].sku", i)] = "is required"
		case !validSKU(it.SKU):
			problems[fmt.Sprintf("items[%d].sku", i)] = fmt.Sprintf("must be at most %d bytes of UTF-8 text", MaxSKULength)
		case seen[it.SKU]:
			problems[fmt.Sprintf("items[%d].sku", i)] = "appears more than once"
		}
		seen[it.SKU] = true
		if it.Quantity < 1 || it.Quantity > MaxQuantity {
			problems[fmt.Sprintf("items[%d].quantity", i)] = fmt.Sprintf("must be between 1 and %d", MaxQuantity)
		}
	}
	return problems
}

// validSKU reports whether s can be a sku at all. Anything else is rejected
// (or is "not found") before it reaches Postgres, which refuses NUL bytes and
// invalid UTF-8 with an error instead of a miss.
func validSKU(s string) bool {
	return s != "" && len(s) <= MaxSKULength && utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// sortedSKUs returns the skus of items in ascending order, so a request
// always yields the same arrays. The lock order itself comes from the
// "ORDER BY sku ... FOR UPDATE" every stock write runs first: one order for
// all transactions, so two of them can never deadlock.
func sortedSKUs(items []Item) []string {
	skus := make([]string, len(items))
	for i, it := range items {
		skus[i] = it.SKU
	}
	slices.Sort(skus)
	return skus
}

// checkStock compares the requested items with the locked products (by sku)
// and returns the StockError that rejects the reservation, or nil. Unknown
// skus win over short ones: a client must fix those first.
func checkStock(items []Item, products map[string]Product) error {
	var unknown, short []string
	for _, it := range items {
		p, ok := products[it.SKU]
		switch {
		case !ok:
			unknown = append(unknown, it.SKU)
		case p.Available < it.Quantity:
			short = append(short, it.SKU)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return &StockError{Code: CodeUnknownSKU, SKUs: unknown}
	}
	if len(short) > 0 {
		slices.Sort(short)
		return &StockError{Code: CodeOutOfStock, SKUs: short}
	}
	return nil
}
