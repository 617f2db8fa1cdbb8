// Package payment is the payment service: it captures card payments through
// the simulated external provider, refunds them, and makes every capture
// safe to retry with an Idempotency-Key, so a client (the order saga) that
// times out and tries again never charges a card twice. Every capture is
// first written as a payment intent, so a charge whose answer was lost (a
// provider timeout, a database that failed after the charge) is never lost:
// the reconciler, a retry or a read of the order's payments settles it by
// asking the provider by the intent's key.
package payment

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/pkg/currency"
	"github.com/orderflow/orderflow/pkg/web"
)

// Payment statuses.
const (
	StatusCaptured = "captured"
	StatusRefunded = "refunded"
)

// Intent states. pending is internal: the outcome is unknown, and the reads
// of the API never show it.
const (
	IntentPending  = "pending"
	IntentCaptured = "captured"
	IntentDeclined = "declined"
)

// Settle outcomes, the outcome label of the settled-intents metric.
const (
	SettledCaptured    = "captured"    // the provider holds the charge: recorded
	SettledAbandoned   = "abandoned"   // the provider holds none: nothing to refund
	SettledUnreachable = "unreachable" // the provider could not be asked: next round
)

// MaxKeyLen is the longest Idempotency-Key accepted.
const MaxKeyLen = 255

var (
	// ErrNotFound means no payment has the id.
	ErrNotFound = errors.New("payment not found")
	// ErrKeyReused means an Idempotency-Key came back with another body.
	ErrKeyReused = errors.New("idempotency key reused with a different request")
	// ErrInProgress means the first request with the key has not finished
	// within the time a duplicate is willing to wait for it.
	ErrInProgress = errors.New("a request with this idempotency key is in progress")
	// ErrProviderUnavailable means the provider is down, failing or
	// unreachable; nothing was recorded and the call may be retried.
	ErrProviderUnavailable = errors.New("payment provider unavailable")
	// ErrProviderTimeout means the provider did not answer in time; the
	// outcome is unknown, so the intent stays pending and a retry with the
	// same key is safe because the provider deduplicates on it.
	ErrProviderTimeout = errors.New("payment provider timed out")
	// ErrNotCharged marks a failed charge after which the provider
	// certainly holds no charge: no attempt reached it (breaker open,
	// bulkhead full, connection refused), or it refused the request. Its
	// intent is deleted with the key, which may then be used again.
	ErrNotCharged = errors.New("provider did not charge")
	// ErrUnsettled means an order has a payment intent whose outcome is
	// still unknown and could not be settled with the provider now; a list
	// of its payments would be incomplete, so it is refused (503).
	ErrUnsettled = errors.New("a payment of the order is not settled yet")
	// ErrChargeNotFound means the provider does not know a charge we stored.
	ErrChargeNotFound = errors.New("provider charge not found")

	// errClaimLost means another request took over the claim on the key,
	// or the key was answered meanwhile.
	errClaimLost = errors.New("idempotency claim taken over")
	// errUnripe means the provider holds no charge for an intent whose
	// latest attempt is still within the grace period.
	errUnripe = errors.New("no charge yet for an intent within its grace period")
)

// DeclinedError is a capture the card issuer refused; DeclineCode is the
// provider's decline code ("card_declined", "insufficient_funds").
type DeclinedError struct {
	DeclineCode string
}

// Error describes the decline.
func (e *DeclinedError) Error() string { return "payment declined: " + e.DeclineCode }

// Outcome is how a capture ended, kept with its Idempotency-Key in the
// statement that settles the intent: the captured Payment, or the
// DeclineCode of a card the provider declined (no payment then). The
// handler renders the first answer and every replay from it alike.
type Outcome struct {
	Payment     Payment
	DeclineCode string
}

// Err is nil for a captured payment, else the *DeclinedError the client is
// answered with.
func (o Outcome) Err() error {
	if o.DeclineCode != "" {
		return &DeclinedError{DeclineCode: o.DeclineCode}
	}
	return nil
}

// Payment is a captured card payment.
type Payment struct {
	ID               string
	OrderID          string
	ProviderChargeID string
	AmountCents      int64
	Currency         string
	Method           string
	Status           string
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

// Key is an Idempotency-Key as the service keeps it: scoped by the caller
// that sent it (the access token's subject; a service's client id), so two
// callers that happen to pick the same key get independent payments, never
// each other's answer or a 422.
type Key struct {
	Caller string
	Value  string
}

// ProviderKey is the idempotency key the provider is sent for k: the
// SHA-256 of the length-prefixed caller and key, in hex. It differs for
// every (caller, key) pair, so two callers' captures never meet at the
// provider either (no choice of subject and key makes two pairs spell the
// same input, as a separator could), and it is the same for every attempt
// and every intent of k, so the provider holds at most one charge for it.
// Fixed-length hex is safe in a header, in a log line and under the
// provider's 255-byte limit whatever the caller sent.
func (k Key) ProviderKey() string {
	sum := sha256.Sum256([]byte(strconv.Itoa(len(k.Caller)) + ":" + k.Caller + k.Value))
	return hex.EncodeToString(sum[:])
}

// Intent is a capture written, with its Idempotency-Key, before the provider
// is called. ProviderKey is the idempotency key the provider sees,
// Key.ProviderKey for intents written since keys are scoped by the caller
// (the caller's key itself for older ones). ID becomes the payment's id.
type Intent struct {
	Key         Key
	ID          string
	OrderID     string
	AmountCents int64
	Currency    string
	Method      string
	ProviderKey string
	// Token is the fencing token of the key's claim when the intent was
	// read: the start of its latest attempt.
	Token time.Time
	// Ripe reports whether that attempt began longer ago than the settle
	// grace period, so no charge of it can still be on its way and the
	// provider's "no charge" is final.
	Ripe bool
}

// payment is the captured payment of the intent with the provider's charge.
func (in Intent) payment(chargeID string, now time.Time) Payment {
	return Payment{ID: in.ID, OrderID: in.OrderID, ProviderChargeID: chargeID, AmountCents: in.AmountCents,
		Currency: in.Currency, Method: in.Method, Status: StatusCaptured, CreatedAt: now, UpdatedAt: now}
}

// CreateRequest asks to capture a payment for an order. Build it with
// (CreateRequest).Normalize so equal requests hash equally.
type CreateRequest struct {
	OrderID     string
	AmountCents int64
	Currency    string
	Method      string
}

// Normalize returns r in canonical form (lower-case hyphenated UUID,
// upper-case currency) and a field→problem map, empty when r is valid.
func (r CreateRequest) Normalize() (CreateRequest, map[string]string) {
	problems := map[string]string{}
	if id, err := uuid.Parse(r.OrderID); err != nil || len(r.OrderID) != 36 {
		problems["order_id"] = "must be a UUID"
	} else {
		r.OrderID = id.String()
	}
	if r.AmountCents <= 0 {
		problems["amount_cents"] = "must be greater than 0"
	}
	r.Currency = strings.ToUpper(r.Currency)
	if !currency.IsCode(r.Currency) {
		problems["currency"] = "must be a 3-letter ISO 4217 code such as USD"
	}
	if strings.TrimSpace(r.Method) == "" {
		problems["method"] = "is required"
	} else if len(r.Method) > 255 {
		problems["method"] = "must be at most 255 characters"
	} else if !web.PlainText(r.Method) {
		problems["method"] = "must be UTF-8 text without control characters"
	}
	return r, problems
}

// Hash fingerprints the request, so a reused Idempotency-Key with another
// body is recognised. It hashes a re-marshalled canonical form, never the
// raw bytes: whitespace and field order must not matter.
func (r CreateRequest) Hash() []byte {
	b, _ := json.Marshal(struct {
		OrderID     string `json:"order_id"`
		AmountCents int64  `json:"amount_cents"`
		Currency    string `json:"currency"`
		Method      string `json:"method"`
	}{r.OrderID, r.AmountCents, r.Currency, r.Method})
	sum := sha256.Sum256(b)
	return sum[:]
}

// ValidKey reports whether k is an acceptable Idempotency-Key: 1 to 255
// bytes of UTF-8 text without control characters (it is stored, logged and
// sent on to the provider).
func ValidKey(k string) bool { return len(k) >= 1 && len(k) <= MaxKeyLen && web.PlainText(k) }

// ProviderSettings changes the simulated provider; a nil field is unchanged.
type ProviderSettings struct {
	LatencyMS *int
	ErrorRate *float64
	Outage    *bool
}

// Validate returns a field→problem map, empty when s is acceptable.
func (s ProviderSettings) Validate() map[string]string {
	problems := map[string]string{}
	if s.LatencyMS != nil && (*s.LatencyMS < 0 || *s.LatencyMS > 60000) {
		problems["latency_ms"] = "must be between 0 and 60000"
	}
	if s.ErrorRate != nil && !(*s.ErrorRate >= 0 && *s.ErrorRate <= 1) {
		problems["error_rate"] = "must be between 0.0 and 1.0"
	}
	return problems
}
