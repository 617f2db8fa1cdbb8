package order

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/pkg/auth"
	"github.com/orderflow/orderflow/pkg/events"
	"github.com/orderflow/orderflow/pkg/periodic"
)

// Inventory is the inventory service as the saga uses it. Reserve returns a
// *RejectedError when nothing could be reserved; Release is idempotent and
// also undoes a commit. RetryAfter is how long calls are still refused
// without being made (its circuit breaker is open), 0 when they are not.
type Inventory interface {
	Reserve(ctx context.Context, orderID string, items []Item) (Reservation, error)
	Commit(ctx context.Context, orderID string) error
	Release(ctx context.Context, orderID string) error
	RetryAfter() time.Duration
}

// Payments is the payment service as the saga uses it. Capture is
// idempotent per order id (it is the Idempotency-Key) and returns a
// *DeclinedError on a decline; Refund is idempotent. RetryAfter is as for
// Inventory.
type Payments interface {
	Capture(ctx context.Context, p PaymentRequest) (Payment, error)
	Refund(ctx context.Context, paymentID string) error
	ListByOrder(ctx context.Context, orderID string) ([]Payment, error)
	RetryAfter() time.Duration
}

// Config holds the service's time limits and how it retries compensations.
type Config struct {
	// CallTimeout bounds each call to inventory or payment.
	CallTimeout time.Duration
	// RequestTimeout bounds a whole create-order saga, and how long a
	// duplicate request waits for the original; it is also the deadline of
	// a cancel (a refund and a release). It must be longer than CallTimeout.
	RequestTimeout time.Duration
	// ReadTimeout is the deadline of every read route (5 s when zero).
	ReadTimeout time.Duration
	// RecoveryAfter is how old a pending order must be before the recovery
	// loop declares its saga dead, and how long an unknown payment outcome
	// gets to settle before the loop refunds it.
	RecoveryAfter time.Duration
	// Lease is how long the recovery loop holds an order it compensates
	// before another replica may take it, for when the process dies in the
	// middle (1 minute when zero). It is at least twice
	// CompensationTimeout, so a running compensation never loses it.
	Lease time.Duration
	// CompensationTimeout bounds one attempt at one order's compensation,
	// all its calls together (3 × CallTimeout when zero: a release, the
	// list of the order's payments and a refund). A downstream that hangs
	// costs the attempt, never the recovery loop.
	CompensationTimeout time.Duration
	// CompensationConcurrency is how many orders' compensations the
	// recovery loop runs at once (8 when zero).
	CompensationConcurrency int
	// CompensationBackoff (1 s when zero) and CompensationMaxBackoff (5 min
	// when zero) shape the wait before the recovery loop retries a failed
	// compensation: after n failed attempts it is drawn uniformly from 0 to
	// CompensationBackoff·2^(n−1), capped at CompensationMaxBackoff ("full
	// jitter"), so the compensations that one outage failed together do not
	// all hit the recovered dependency at the same moment. It is never
	// shorter than the time an open circuit breaker still rejects calls.
	CompensationBackoff    time.Duration
	CompensationMaxBackoff time.Duration
	// CompensationMaxAttempts is how many of the recovery loop's attempts
	// may fail before the compensation is parked as needing attention (10
	// when zero): no longer retried on its own, logged once at error level,
	// counted in orderflow_compensation_needs_attention (Instrument), listed
	// by GET /admin/compensations until an operator retries it
	// (RetryCompensation).
	CompensationMaxAttempts int
}

// Service runs the order use cases.
type Service struct {
	store *Store
	inv   Inventory
	pay   Payments
	cfg   Config
	log   *slog.Logger
	// jitter draws the wait before a compensation's retry from [0, d].
	jitter func(d time.Duration) time.Duration
	// metrics record nothing until Instrument.
	metrics metrics
}

// NewService returns a Service. inv and pay are the downstream clients.
func NewService(store *Store, inv Inventory, pay Payments, cfg Config, log *slog.Logger) *Service {
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 5 * time.Second
	}
	if cfg.CompensationTimeout <= 0 {
		cfg.CompensationTimeout = 3 * cfg.CallTimeout
	}
	if cfg.CompensationTimeout <= 0 {
		cfg.CompensationTimeout = time.Minute
	}
	if cfg.Lease <= 0 {
		cfg.Lease = time.Minute
	}
	cfg.Lease = max(cfg.Lease, 2*cfg.CompensationTimeout)
	if cfg.CompensationConcurrency <= 0 {
		cfg.CompensationConcurrency = 8
	}
	if cfg.CompensationBackoff <= 0 {
		cfg.CompensationBackoff = time.Second
	}
	if cfg.CompensationMaxBackoff <= 0 {
		cfg.CompensationMaxBackoff = 5 * time.Minute
	}
	if cfg.CompensationMaxAttempts <= 0 {
		cfg.CompensationMaxAttempts = 10
	}
	return &Service{store: store, inv: inv, pay: pay, cfg: cfg, log: log, jitter: fullJitter, metrics: noMetrics()}
}

// RetryAfter is how long the client of a failed order should wait before
// retrying it: the longest remaining open delay of the breakers in front of
// inventory and payment (0 when none is open). An order needs both, so a
// retry before every breaker has half-opened would be rejected again at
// once. A compensation is not retried before then either: the attempt
// would be rejected without a call and only use up one of its attempts.
func (s *Service) RetryAfter() time.Duration {
	return max(s.inv.RetryAfter(), s.pay.RetryAfter())
}

// canonicalID reports whether id is a UUID in its one canonical form (36
// characters, lower-case hex and dashes): "urn:uuid:…", braces and upper
// case are no ids of this API, and never reach the database.
func canonicalID(id string) bool {
	u, err := uuid.Parse(id)
	return err == nil && u.String() == id
}

// customerKey is the stored form of a customer's idempotency key: keys are
// per customer, so two customers who happen to send the same key never see
// each other's answer or a 422. Customer ids hold no control characters
// (CreateRequest.Validate, and the token's subject), so the separator
// keeps the pair unambiguous.
func customerKey(customerID, key string) string { return customerID + "\x1f" + key }

// KeyRetention is how long an answered idempotency key is kept: a retry
// within a day gets the first answer; later, the key is a new request.
const KeyRetention = 24 * time.Hour

// pollInterval is how often a duplicate request checks whether the
// original has finished.
const pollInterval = 25 * time.Millisecond

// Create places an order for caller, a customer, under idempotency key. The
// customer is the caller's token subject: a request naming another is
// ErrCustomerMismatch. It returns the request's outcome, kept with the key,
// and whether an earlier request with the key had stored it (a replay).
// Other errors: ErrKeyReused, an *OrderError wrapping ErrInProgress while
// the key's first request still runs, anything else internal.
func (s *Service) Create(ctx context.Context, caller auth.Principal, key string, req CreateRequest) (out Outcome, replayed bool, err error) {
	if req.CustomerID != "" && req.CustomerID != caller.Subject {
		return Outcome{}, false, ErrCustomerMismatch
	}
	req.CustomerID = caller.Subject
	key = customerKey(caller.Subject, key)

	// The saga keeps the caller's deadline when it is sooner (a gateway or
	// client that sent Request-Timeout, or the route's own limit).
	deadline := time.Now().Add(s.cfg.RequestTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	waitCtx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()

	o := newOrder(req)
	c, err := s.store.begin(waitCtx, key, req.hash(), o)
	if err != nil {
		return Outcome{}, false, err
	}
	for {
		switch c.state {
		case claimStarted:
			// The saga must not stop half way because the client went away:
			// it keeps the deadline but not the cancellation.
			sagaCtx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
			defer cancel()
			out, err := s.saga(sagaCtx, key, o)
			return out, false, err
		case claimMismatch:
			return Outcome{}, false, ErrKeyReused
		case claimDone:
			return c.outcome, true, nil
		}
		// In progress: wait for the original request's answer.
		select {
		case <-waitCtx.Done():
			return Outcome{}, false, &OrderError{OrderID: c.orderID, Err: ErrInProgress}
		case <-time.After(pollInterval):
		}
		next, err := s.store.lookupKey(waitCtx, key)
		if err != nil {
			if waitCtx.Err() != nil {
				return Outcome{}, false, &OrderError{OrderID: c.orderID, Err: ErrInProgress}
			}
			return Outcome{}, false, err
		}
		c = next
	}
}

// newOrder is the pending order a create request stores.
func newOrder(req CreateRequest) Order {
	now := time.Now().UTC().Truncate(time.Microsecond)
	o := Order{
		ID:            uuid.Must(uuid.NewV7()).String(),
		CustomerID:    req.CustomerID,
		Email:         req.Email,
		Status:        StatusPending,
		PaymentMethod: req.PaymentMethod,
		Currency:      DefaultCurrency,
		CreatedAt:     now,
		UpdatedAt:     now,
	}
	for _, it := range req.Items {
		o.Items = append(o.Items, Item{SKU: it.SKU, Quantity: it.Quantity})
	}
	return o
}

// saga runs the order through reserve → pay → commit → confirm, and on a
// failure compensates what was done and records the failure (fail). Every
// status change is conditional on the order still being pending, so the
// recovery loop and this saga never both finish the same order.
func (s *Service) saga(ctx context.Context, key string, o Order) (Outcome, error) {
	// 2. Reserve stock.
	res, err := call(ctx, s.cfg.CallTimeout, func(ctx context.Context) (Reservation, error) {
		return s.inv.Reserve(ctx, o.ID, o.Items)
	})
	var rejected *RejectedError
	if errors.As(err, &rejected) {
		// Nothing was reserved, so nothing is undone.
		return s.fail(ctx, key, o, failure{to: StatusRejected, reason: rejected.Code, skus: rejected.SKUs})
	}
	if err == nil {
		o, err = priced(o, res)
	}
	if err != nil {
		return s.fail(ctx, key, o, unavailable("reserve", ReasonInventoryUnavailable, err))
	}
	dctx, cancel := detached(ctx, storeTimeout)
	err = s.store.setPrices(dctx, o)
	cancel()
	if err != nil {
		// Most likely the recovery loop failed the order meanwhile.
		_ = s.compensate(context.WithoutCancel(ctx), o.ID, "")
		return s.lost(ctx, o.ID, err)
	}

	// 3. Take the payment. The order id is the Idempotency-Key, so a
	// retried or late capture never charges twice.
	pay, err := call(ctx, s.cfg.CallTimeout, func(ctx context.Context) (Payment, error) {
		return s.pay.Capture(ctx, PaymentRequest{OrderID: o.ID, AmountCents: o.TotalCents,
			Currency: o.Currency, Method: o.PaymentMethod})
	})
	var declined *DeclinedError
	if errors.As(err, &declined) {
		return s.fail(ctx, key, o, failure{to: StatusPaymentFailed, reason: cmp.Or(declined.DeclineCode, "payment_declined"),
			event: events.OrderPaymentFailed, undo: true})
	}
	if err != nil {
		// The outcome is unknown: the capture may still settle. The stock
		// is released now, and the recovery loop refunds whatever was
		// captured once the payment had time to settle.
		f := unavailable("payment", ReasonPaymentUnavailable, err)
		f.settling = true
		return s.fail(ctx, key, o, f)
	}

	// 4. Commit the reservation.
	_, err = call(ctx, s.cfg.CallTimeout, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.inv.Commit(ctx, o.ID)
	})
	if err != nil {
		f := unavailable("commit", ReasonInventoryUnavailable, err)
		f.paymentID = pay.ID
		return s.fail(ctx, key, o, f)
	}

	// 5. Confirm, with the outbox event and the stored outcome.
	return s.confirm(ctx, key, o, pay.ID)
}

// failure is how a saga step failed: the order's final status and reason,
// and what is undone before that status is written.
type failure struct {
	to, reason string
	// event is the outbox event of the failure, if it has one.
	event string
	// skus are a rejection's refused SKUs, kept with the outcome.
	skus []string
	// step and err name the call that failed, for the log.
	step string
	err  error
	// undo releases the reservation and refunds paymentID (when set) at
	// once; when that fails the recovery loop retries it.
	undo      bool
	paymentID string
	// settling: the capture's outcome is unknown, so the recovery loop
	// refunds whatever was captured once the payment had RecoveryAfter to
	// settle, whatever the release did.
	settling bool
}

// unavailable is the failure of a step whose dependency did not answer:
// the order fails, and anything it may hold is undone.
func unavailable(step, reason string, err error) failure {
	return failure{to: StatusFailed, reason: reason, step: step, err: err, undo: true}
}

// fail undoes what f says, then records the order's failure and its outcome
// with the key.
func (s *Service) fail(ctx context.Context, key string, o Order, f failure) (Outcome, error) {
	if f.err != nil {
		s.log.WarnContext(ctx, f.step+" failed", "order_id", o.ID, "error", f.err)
	}
	t := transition{orderID: o.ID, from: StatusPending, to: f.to, paymentID: f.paymentID,
		failureReason: f.reason, event: f.event, key: key, skus: f.skus}
	if f.undo {
		// Compensations run to the end even when the saga's deadline has
		// passed.
		err := s.compensate(context.WithoutCancel(ctx), o.ID, f.paymentID)
		switch {
		case f.settling:
			t.compensate, t.compensateIn = true, s.cfg.RecoveryAfter
		case err != nil:
			t.compensate = true
		}
	}
	return s.finish(ctx, t)
}

// confirm confirms the order with its outbox event and outcome. When the
// recovery loop failed the order first, the payment and the commit are
// undone, as the loop would.
func (s *Service) confirm(ctx context.Context, key string, o Order, paymentID string) (Outcome, error) {
	out, err := s.finish(ctx, transition{orderID: o.ID, from: StatusPending, to: StatusConfirmed,
		paymentID: paymentID, event: events.OrderConfirmed, key: key})
	if err == nil && out.Order.Status != StatusConfirmed {
		_ = s.compensate(context.WithoutCancel(ctx), o.ID, paymentID)
	}
	return out, err
}

// finish applies the saga's final transition t, which stores the outcome
// with t.key, and counts the order's final status: this is where the saga
// decides it. An order the recovery loop failed first is counted there.
func (s *Service) finish(ctx context.Context, t transition) (Outcome, error) {
	dctx, cancel := detached(ctx, storeTimeout)
	defer cancel()
	o, err := s.store.apply(dctx, t)
	if err != nil {
		return s.lost(ctx, t.orderID, err)
	}
	s.metrics.finished(ctx, o.Status, o.CreatedAt)
	s.log.InfoContext(ctx, "order finished", "order_id", t.orderID, "status", t.to,
		"failure_reason", t.failureReason)
	return Outcome{Order: o, SKUs: t.skus}, nil
}

// lost answers a saga whose order was failed by the recovery loop while it
// ran: the loop stored the same outcome (failed) with the key and
// compensates the order.
func (s *Service) lost(ctx context.Context, orderID string, err error) (Outcome, error) {
	if !errors.Is(err, errLostRace) {
		return Outcome{}, err
	}
	s.log.WarnContext(ctx, "saga lost its order to the recovery loop", "order_id", orderID)
	return Outcome{Order: Order{ID: orderID, Status: StatusFailed}}, nil
}

// priced copies the reservation's unit prices onto o and totals it; a
// reservation that holds no stock is an error.
func priced(o Order, res Reservation) (Order, error) {
	if !res.Usable() {
		return o, fmt.Errorf("reservation is %s", res.Status)
	}
	prices := make(map[string]int64, len(res.Items))
	for _, it := range res.Items {
		prices[it.SKU] = it.UnitPriceCents
	}
	items := make([]Item, len(o.Items))
	var total int64
	for i, it := range o.Items {
		price, ok := prices[it.SKU]
		if !ok {
			return o, fmt.Errorf("reservation has no price for %s", it.SKU)
		}
		it.UnitPriceCents = price
		items[i] = it
		total += price * int64(it.Quantity)
	}
	o.Items, o.TotalCents = items, total
	if res.Currency != "" {
		o.Currency = res.Currency
	}
	return o, nil
}

// release releases the order's reservation, best effort, logging the
// compensation either way. Compensations of a saga or a cancel run on a
// context without cancellation: they must finish even when the request's
// deadline has passed or its client went away.
func (s *Service) release(ctx context.Context, orderID string) error {
	_, err := call(ctx, s.cfg.CallTimeout, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.inv.Release(ctx, orderID)
	})
	s.logCompensation(ctx, orderID, "release", "", err)
	return err
}

// refund refunds one payment, best effort, logging the compensation.
func (s *Service) refund(ctx context.Context, orderID, paymentID string) error {
	_, err := call(ctx, s.cfg.CallTimeout, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.pay.Refund(ctx, paymentID)
	})
	s.logCompensation(ctx, orderID, "refund", paymentID, err)
	return err
}

// compensate refunds paymentID (when set) and releases the reservation.
// The error names each step that failed.
func (s *Service) compensate(ctx context.Context, orderID, paymentID string) error {
	var errs []error
	if paymentID != "" {
		if err := s.refund(ctx, orderID, paymentID); err != nil {
			errs = append(errs, fmt.Errorf("refund %s: %w", paymentID, err))
		}
	}
	if err := s.release(ctx, orderID); err != nil {
		errs = append(errs, fmt.Errorf("release: %w", err))
	}
	return errors.Join(errs...)
}

// compensateAll releases the reservation and refunds every captured payment
// payment knows for the order: the recovery loop cannot know whether a
// capture whose answer was lost went through. The error names each step
// that failed. unsettled reports that payment could not list the order's
// payments yet because a charge's outcome is still unknown to it
// (ErrPaymentUnsettled): no step failed, but the refunds are still to make.
func (s *Service) compensateAll(ctx context.Context, orderID string) (unsettled bool, err error) {
	var errs []error
	if err := s.release(ctx, orderID); err != nil {
		errs = append(errs, fmt.Errorf("release: %w", err))
	}
	payments, err := call(ctx, s.cfg.CallTimeout, func(ctx context.Context) ([]Payment, error) {
		return s.pay.ListByOrder(ctx, orderID)
	})
	if errors.Is(err, ErrPaymentUnsettled) {
		return true, errors.Join(errs...)
	}
	if err != nil {
		s.logCompensation(ctx, orderID, "list_payments", "", err)
		return false, errors.Join(append(errs, fmt.Errorf("list payments: %w", err))...)
	}
	for _, p := range payments {
		if p.Status != "captured" {
			continue
		}
		if err := s.refund(ctx, orderID, p.ID); err != nil {
			errs = append(errs, fmt.Errorf("refund %s: %w", p.ID, err))
		}
	}
	return false, errors.Join(errs...)
}

func (s *Service) logCompensation(ctx context.Context, orderID, action, paymentID string, err error) {
	attrs := []any{"order_id", orderID, "action", action}
	if paymentID != "" {
		attrs = append(attrs, "payment_id", paymentID)
	}
	if err != nil {
		s.log.WarnContext(ctx, "compensation failed", append(attrs, "error", err.Error())...)
		return
	}
	s.log.InfoContext(ctx, "compensation done", attrs...)
}

// Get returns one order: any to an operator, a customer's own to the
// customer, ErrNotFound otherwise (another's order is not confirmed to
// exist).
func (s *Service) Get(ctx context.Context, caller auth.Principal, id string) (Order, error) {
	if !canonicalID(id) {
		return Order{}, ErrNotFound
	}
	o, err := s.store.Get(ctx, id)
	if err != nil {
		return Order{}, err
	}
	if !caller.IsAdmin() && o.CustomerID != caller.Subject {
		return Order{}, ErrNotFound
	}
	return o, nil
}

// Page is one page of a customer's orders.
type Page struct {
	Orders []Order
	// NextCursor is empty on the last page.
	NextCursor string
}

// List returns a page of customerID's orders, newest first. cursor is the
// NextCursor of the previous page, empty for the first. A customer lists
// their own (customerID empty or theirs; another's is
// ErrCustomerMismatch); an operator names the customer.
func (s *Service) List(ctx context.Context, caller auth.Principal, customerID, cursor string, limit int) (Page, error) {
	switch {
	case customerID == "" && caller.IsAdmin():
		return Page{}, ErrCustomerRequired
	case customerID == "":
		customerID = caller.Subject
	case customerID != caller.Subject && !caller.IsAdmin():
		return Page{}, ErrCustomerMismatch
	}
	orders, next, err := keysetPage(cursor, limit, func(after *Cursor, n int) ([]Order, error) {
		return s.store.List(ctx, customerID, after, n)
	}, func(o Order) Cursor { return Cursor{CreatedAt: o.CreatedAt, ID: o.ID} })
	if err != nil {
		return Page{}, err
	}
	return Page{Orders: orders, NextCursor: next}, nil
}

// keysetPage reads one page of a keyset-paginated list: up to limit rows
// after cursor (the NextCursor of the previous page, empty for the first)
// from load, and the cursor of the next page, empty on the last. load is
// asked for one row more than limit: that row tells whether another page
// exists, so no cursor ever leads to an empty page. at is a row's position.
func keysetPage[T any](cursor string, limit int, load func(after *Cursor, n int) ([]T, error), at func(T) Cursor) ([]T, string, error) {
	var after *Cursor
	if cursor != "" {
		c, err := decodeCursor(cursor)
		if err != nil {
			return nil, "", err
		}
		after = &c
	}
	rows, err := load(after, limit+1)
	if err != nil || len(rows) <= limit {
		return rows, "", err
	}
	rows = rows[:limit]
	return rows, encodeCursor(at(rows[limit-1])), nil
}

func encodeCursor(c Cursor) string {
	raw := strconv.FormatInt(c.CreatedAt.UnixMicro(), 10) + "," + c.ID
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func decodeCursor(s string) (Cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, ErrBadCursor
	}
	ts, id, ok := strings.Cut(string(raw), ",")
	if !ok {
		return Cursor{}, ErrBadCursor
	}
	micros, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return Cursor{}, ErrBadCursor
	}
	u, err := uuid.Parse(id)
	if err != nil {
		return Cursor{}, ErrBadCursor
	}
	return Cursor{CreatedAt: time.UnixMicro(micros).UTC(), ID: u.String()}, nil
}

// Cancel cancels a confirmed order: the status change and its event commit
// first, with the compensation scheduled, then the payment is refunded and
// the stock released; if that fails the recovery loop retries it. Cancelling
// a cancelled order returns it unchanged. Only the order's customer may
// cancel it: another's order is ErrNotFound.
func (s *Service) Cancel(ctx context.Context, caller auth.Principal, id string) (Order, error) {
	if !canonicalID(id) {
		return Order{}, ErrNotFound
	}
	owned, err := s.store.Get(ctx, id)
	if err != nil {
		return Order{}, err
	}
	if owned.CustomerID != caller.Subject {
		return Order{}, ErrNotFound
	}
	o, err := s.store.apply(ctx, transition{orderID: id, from: StatusConfirmed, to: StatusCancelled,
		compensate: true, event: events.OrderCancelled})
	if errors.Is(err, errLostRace) {
		o, err := s.store.Get(ctx, id)
		if err != nil {
			return Order{}, err
		}
		if o.Status != StatusCancelled {
			return Order{}, ErrNotCancellable
		}
		return o, nil
	}
	if err != nil {
		return Order{}, err
	}
	cctx := context.WithoutCancel(ctx)
	if err := s.compensate(cctx, o.ID, o.PaymentID); err != nil {
		return o, nil // the recovery loop retries
	}
	dctx, cancel := detached(ctx, storeTimeout)
	defer cancel()
	if err := s.store.clearCompensation(dctx, o.ID); err != nil {
		s.log.WarnContext(ctx, "clear compensation", "order_id", o.ID, "error", err)
	}
	return o, nil
}

// storeTimeout bounds each of the service's own database writes that must
// happen whatever the request's deadline (a saga's final status, its
// prices) and each of the recovery loop's statements: failing stale
// orders, leasing due compensations, recording an attempt. The pool's
// statement_timeout (pkg/postgres) is shorter, so a hung statement is
// cancelled by the server before this gives up on it.
const storeTimeout = 10 * time.Second

// maxLeaseBatch is the most compensations one statement leases.
const maxLeaseBatch = 50

// Recover runs one round of the recovery loop and waits for it: it fails
// the pending orders whose saga died, then runs the compensations that are
// due (at most CompensationConcurrency, each within CompensationTimeout).
// RunRecovery does the same continuously.
func (s *Service) Recover(ctx context.Context) error {
	_, staleErr := s.failStale(ctx)
	w := newCompensators(s.cfg.CompensationConcurrency)
	dueErr := s.compensateDue(ctx, w)
	w.wg.Wait()
	return errors.Join(staleErr, dueErr)
}

// RunRecovery runs the recovery loop until ctx is done, in two halves that
// never wait for each other. One fails the pending orders whose saga died,
// every interval. The other runs the due compensations in the background,
// at most CompensationConcurrency at once and each within
// CompensationTimeout: it leases every interval, and again as soon as a
// compensation ends or dead sagas were failed, so a backlog drains as fast
// as the downstreams answer, while one that hangs holds only its own slots.
// RunRecovery returns once the running compensations have ended: ctx's end
// cancels their calls, and their leases run out so that another replica
// retries them.
func (s *Service) RunRecovery(ctx context.Context, interval time.Duration) {
	w := newCompensators(s.cfg.CompensationConcurrency)
	defer w.wg.Wait()
	var halves sync.WaitGroup
	halves.Go(func() {
		periodic.Run(ctx, interval, func(ctx context.Context) {
			n, err := s.failStale(ctx)
			if n > 0 {
				w.wake()
			}
			s.logRecoveryError(ctx, "failing dead sagas", err)
		})
	})
	halves.Go(func() {
		periodic.RunOrWake(ctx, interval, w.woken, func(ctx context.Context) {
			s.logRecoveryError(ctx, "leasing due compensations", s.compensateDue(ctx, w))
		})
	})
	halves.Wait()
}

func (s *Service) logRecoveryError(ctx context.Context, what string, err error) {
	if err != nil && ctx.Err() == nil {
		s.log.ErrorContext(ctx, "recovery loop: "+what, "error", err)
	}
}

// failStale fails the pending orders whose saga died, schedules their
// compensation and counts them as failed: the loop decides their status.
// It returns how many it failed.
func (s *Service) failStale(ctx context.Context) (int, error) {
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	failed, err := s.store.failStale(sctx, s.cfg.RecoveryAfter)
	if err != nil {
		return 0, err
	}
	for _, o := range failed {
		s.metrics.finished(ctx, StatusFailed, o.createdAt)
		s.log.WarnContext(ctx, "saga timed out; order failed", "order_id", o.id,
			"failure_reason", ReasonSagaTimeout)
	}
	return len(failed), nil
}

// compensators are the recovery loop's compensations in flight: a slot
// each, at most cap(slots).
type compensators struct {
	slots chan struct{}
	// woken holds a signal when a slot freed up or dead sagas were failed
	// since the last lease: there may be more to lease. One signal stands
	// for any number.
	woken chan struct{}
	wg    sync.WaitGroup
}

func newCompensators(n int) *compensators {
	return &compensators{slots: make(chan struct{}, n), woken: make(chan struct{}, 1)}
}

// wake signals woken without waiting.
func (w *compensators) wake() {
	select {
	case w.woken <- struct{}{}:
	default:
	}
}

// compensateDue leases as many due compensations as w has free slots and
// starts each in its own goroutine, which frees its slot and wakes w when
// it ends. It never waits for a slot: with every slot held it leases
// nothing. Only one goroutine calls it per w, so the free slots it counts
// stay free.
func (s *Service) compensateDue(ctx context.Context, w *compensators) error {
	for ctx.Err() == nil {
		free := min(cap(w.slots)-len(w.slots), maxLeaseBatch)
		if free == 0 {
			return nil
		}
		lctx, cancel := context.WithTimeout(ctx, storeTimeout)
		due, err := s.store.leaseDue(lctx, s.cfg.Lease, free)
		cancel()
		if err != nil {
			return err
		}
		for _, d := range due {
			w.slots <- struct{}{}
			w.wg.Go(func() {
				defer w.wake()
				defer func() { <-w.slots }()
				s.compensateLeased(ctx, d)
			})
		}
		if len(due) < free {
			return nil
		}
	}
	return nil
}

// compensateLeased runs one attempt at a leased compensation within
// CompensationTimeout and records its outcome.
func (s *Service) compensateLeased(ctx context.Context, d dueCompensation) {
	cctx, cancel := context.WithTimeout(ctx, s.cfg.CompensationTimeout)
	unsettled, err := s.compensateAll(cctx, d.orderID)
	cancel()
	// The outcome is written even when the attempt used up its deadline.
	dctx, cancel := detached(ctx, storeTimeout)
	defer cancel()
	switch {
	case err == nil && !unsettled:
		s.metrics.attempt(ctx, attemptDone)
		if err := s.store.clearCompensation(dctx, d.orderID); err != nil {
			s.log.WarnContext(ctx, "clear compensation", "order_id", d.orderID, "error", err)
		}
	case ctx.Err() != nil:
		// Shutting down cut the attempt short: that is no failure of the
		// dependency. The lease runs out and a replica tries again.
	case err != nil:
		s.compensationFailed(dctx, d, err)
	default:
		s.compensationUnsettled(dctx, d)
	}
}

// compensationFailed counts a failed attempt and schedules the next one
// with backoff, or parks the compensation once it has failed
// CompensationMaxAttempts times.
func (s *Service) compensationFailed(ctx context.Context, d dueCompensation, err error) {
	failures := d.attempts + 1
	retryIn := max(s.jitter(backoffCeiling(failures, s.cfg.CompensationBackoff, s.cfg.CompensationMaxBackoff)),
		s.RetryAfter())
	msg := errorText(err)
	attempts, parked, rerr := s.store.recordCompensationFailure(ctx, d.orderID, msg, retryIn, s.cfg.CompensationMaxAttempts)
	switch {
	case rerr != nil:
		// Not counted: the lease runs out and the attempt is made again.
		s.log.WarnContext(ctx, "record compensation failure", "order_id", d.orderID, "error", rerr)
	case parked:
		s.metrics.attempt(ctx, attemptParked)
		s.log.ErrorContext(ctx, "compensation needs attention: no more automatic retries",
			"order_id", d.orderID, "attempts", attempts, "error", msg)
	case attempts > 0:
		s.metrics.attempt(ctx, attemptRetry)
		s.log.WarnContext(ctx, "compensation failed; retrying later", "order_id", d.orderID,
			"attempts", attempts, "retry_in", retryIn.String(), "error", msg)
	}
}

// compensationUnsettled schedules the next attempt of a compensation whose
// refunds payment could not list yet: a charge's outcome is still unknown
// to payment, which settles it with the provider meanwhile. Nothing
// failed, so no attempt is counted towards CompensationMaxAttempts, and
// the wait does not grow: CompensationBackoff, plus up to as much again at
// random so that the orders of one provider outage do not ask in step, and
// never before payment's breaker half-opens.
func (s *Service) compensationUnsettled(ctx context.Context, d dueCompensation) {
	retryIn := max(s.cfg.CompensationBackoff+s.jitter(s.cfg.CompensationBackoff), s.RetryAfter())
	if err := s.store.postponeCompensation(ctx, d.orderID, retryIn); err != nil {
		// The lease runs out and the attempt is made again.
		s.log.WarnContext(ctx, "postpone compensation", "order_id", d.orderID, "error", err)
		return
	}
	s.metrics.attempt(ctx, attemptUnsettled)
	s.log.InfoContext(ctx, "compensation waits for payment to settle a charge", "order_id", d.orderID,
		"retry_in", retryIn.String())
}

// backoffCeiling is the longest wait after failures failed attempts:
// base·2^(failures−1), at most ceiling.
func backoffCeiling(failures int, base, ceiling time.Duration) time.Duration {
	d := base
	for i := 1; i < failures && d < ceiling; i++ {
		d *= 2
	}
	return min(d, ceiling)
}

// fullJitter draws a wait uniformly from [0, d].
func fullJitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d + 1)
}

// maxErrorText is how much of a compensation's error is kept for the
// operator.
const maxErrorText = 1000

// errorText is err's message on one line of printable text, at most
// maxErrorText bytes: joined errors are separated by "; ".
func errorText(err error) string {
	msg := strings.ReplaceAll(err.Error(), "\n", "; ")
	msg = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, msg)
	if len(msg) > maxErrorText {
		msg = strings.ToValidUTF8(msg[:maxErrorText], "")
	}
	return msg
}

// CompensationPage is one page of the compensations needing attention.
type CompensationPage struct {
	Compensations []Compensation
	// NextCursor is empty on the last page.
	NextCursor string
}

// NeedingAttention returns a page of the compensations the recovery loop
// gave up on, longest parked first. cursor is the NextCursor of the
// previous page, empty for the first. It is for operators (routes.go).
func (s *Service) NeedingAttention(ctx context.Context, cursor string, limit int) (CompensationPage, error) {
	list, next, err := keysetPage(cursor, limit, func(after *Cursor, n int) ([]Compensation, error) {
		return s.store.needingAttention(ctx, after, n)
	}, func(c Compensation) Cursor { return Cursor{CreatedAt: c.NeedsAttentionSince, ID: c.OrderID} })
	if err != nil {
		return CompensationPage{}, err
	}
	return CompensationPage{Compensations: list, NextCursor: next}, nil
}

// RetryCompensation makes the order's outstanding compensation (parked, or
// waiting out its backoff) due at once with its attempts reset: an operator
// fixed what made it fail. The recovery loop runs it in its next round.
// ErrNotFound when there is no such order, ErrNoCompensation when it has
// nothing outstanding. caller is the operator, for the log.
func (s *Service) RetryCompensation(ctx context.Context, caller auth.Principal, orderID string) (Compensation, error) {
	if !canonicalID(orderID) {
		return Compensation{}, ErrNotFound
	}
	c, err := s.store.retryCompensation(ctx, orderID)
	if err != nil {
		return Compensation{}, err
	}
	s.log.InfoContext(ctx, "compensation retry requested", "order_id", orderID, "operator", caller.Subject)
	return c, nil
}

// call runs fn under its own timeout.
func call[T any](ctx context.Context, timeout time.Duration, fn func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return fn(ctx)
}

// detached returns a context that keeps ctx's values but not its
// cancellation or deadline, bounded by timeout instead: the final status
// write must happen even when the saga's deadline has passed.
func detached(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), timeout)
}
