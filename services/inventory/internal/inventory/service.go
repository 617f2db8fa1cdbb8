package inventory

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/pkg/periodic"
)

// Service holds the inventory use cases over a Store and the product Cache.
type Service struct {
	store *Store
	cache *Cache
	ttl   time.Duration
}

// NewService returns a Service whose reservations expire ttl after they are
// made unless committed or released first. cache may be nil (no Redis at
// all); every write that changes what a product read returns invalidates it
// after the write committed.
func NewService(store *Store, cache *Cache, ttl time.Duration) *Service {
	return &Service{store: store, cache: cache, ttl: ttl}
}

// CacheStats returns the product cache's counters (zero without a cache).
func (s *Service) CacheStats() CacheStats {
	if s.cache == nil {
		return CacheStats{}
	}
	return s.cache.Stats()
}

// invalidate drops the cached products of skus. It runs after the commit:
// before it, a concurrent fill could cache the row the write replaces.
func (s *Service) invalidate(ctx context.Context, skus ...string) {
	if s.cache != nil {
		s.cache.Invalidate(ctx, skus...)
	}
}

// Ping reports whether the database answers.
func (s *Service) Ping(ctx context.Context) error { return s.store.Ping(ctx) }

// Product returns one product; cached reports whether Redis answered.
func (s *Service) Product(ctx context.Context, sku string) (p Product, cached bool, err error) {
	if !validSKU(sku) {
		return Product{}, false, fmt.Errorf("product %q: %w", sku, ErrNotFound)
	}
	if s.cache != nil {
		p, cached, err = s.cache.Get(ctx, sku, func(ctx context.Context) (Product, error) { return s.store.Product(ctx, sku) })
	} else {
		p, err = s.store.Product(ctx, sku)
	}
	if err != nil {
		return Product{}, false, fmt.Errorf("product %q: %w", sku, err)
	}
	return p, cached, nil
}

// Products returns one page of the catalogue in sku order and the cursor of
// the next page, empty on the last page. It fetches one row more than limit
// to know whether another page exists, so no cursor ever leads to an empty
// page.
func (s *Service) Products(ctx context.Context, limit int, cursor string) ([]Product, string, error) {
	after, err := decodeCursor(cursor)
	if err != nil {
		return nil, "", err
	}
	ps, err := s.store.Products(ctx, after, limit+1)
	if err != nil {
		return nil, "", err
	}
	if len(ps) <= limit {
		return ps, "", nil
	}
	ps = ps[:limit]
	return ps, encodeCursor(ps[len(ps)-1].SKU), nil
}

// SetStock sets a product's available stock (an operator's correction).
func (s *Service) SetStock(ctx context.Context, sku string, available int) (Product, error) {
	if !validSKU(sku) {
		return Product{}, fmt.Errorf("set stock of %q: %w", sku, ErrNotFound)
	}
	p, err := s.store.SetStock(ctx, sku, available)
	if err != nil {
		return Product{}, fmt.Errorf("set stock of %q: %w", sku, err)
	}
	s.invalidate(ctx, sku)
	return p, nil
}

// Reserve holds stock for an order, all or nothing. created is false when the
// order already had a reservation, which is returned unchanged.
func (s *Service) Reserve(ctx context.Context, orderID uuid.UUID, items []Item) (Reservation, bool, error) {
	r, created, err := s.store.Reserve(ctx, orderID, items, s.ttl)
	if err == nil && created {
		s.invalidate(ctx, sortedSKUs(items)...)
	}
	return r, created, err
}

// Reservation returns an order's reservation.
func (s *Service) Reservation(ctx context.Context, orderID uuid.UUID) (Reservation, error) {
	r, err := s.store.Reservation(ctx, orderID)
	if err != nil {
		return Reservation{}, fmt.Errorf("reservation %s: %w", orderID, err)
	}
	return r, nil
}

// Commit makes an order's reservation permanent; repeating it is harmless.
// It changes no product's available stock (that was taken at reserve time),
// so it leaves the cache alone.
func (s *Service) Commit(ctx context.Context, orderID uuid.UUID) (Reservation, error) {
	r, err := s.store.Commit(ctx, orderID)
	if err != nil {
		return Reservation{}, fmt.Errorf("reservation %s: %w", orderID, err)
	}
	return r, nil
}

// Release returns an order's stock; repeating it is harmless, and releasing an
// unknown order leaves a tombstone that blocks a late reserve.
func (s *Service) Release(ctx context.Context, orderID uuid.UUID) (Reservation, error) {
	r, err := s.store.Release(ctx, orderID)
	if err != nil {
		return Reservation{}, err
	}
	// A repeated release changes nothing; invalidating again is harmless
	// and cheaper than telling the two apart in the store.
	skus := make([]string, len(r.Items))
	for i, it := range r.Items {
		skus[i] = it.SKU
	}
	s.invalidate(ctx, skus...)
	return r, nil
}

// Sweep expires every reservation past its expiry, batch by batch, and
// returns how many it expired.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	total := 0
	for {
		n, skus, err := s.store.ExpireReservations(ctx, SweepBatchSize)
		s.invalidate(ctx, skus...)
		total += n
		if err != nil || n < SweepBatchSize {
			return total, err
		}
	}
}

// RunSweeper sweeps every interval until ctx is done. Errors are logged and
// the next tick tries again: a database blip must not stop expiry for good.
func (s *Service) RunSweeper(ctx context.Context, interval time.Duration, log *slog.Logger) {
	periodic.Run(ctx, interval, func(ctx context.Context) {
		n, err := s.Sweep(ctx)
		if err != nil && !errors.Is(err, context.Canceled) {
			log.ErrorContext(ctx, "sweep expired reservations", "error", err.Error())
		}
		if n > 0 {
			log.InfoContext(ctx, "expired reservations", "count", n)
		}
	})
}

// cursorPrefix versions the cursor format, so a cursor that was not issued
// by this service is rejected instead of silently skipping rows.
const cursorPrefix = "sku:"

func encodeCursor(sku string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + sku))
}

func decodeCursor(cursor string) (string, error) {
	if cursor == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return "", ErrBadCursor
	}
	sku, ok := strings.CutPrefix(string(b), cursorPrefix)
	if !ok || !validSKU(sku) {
		return "", ErrBadCursor
	}
	return sku, nil
}
