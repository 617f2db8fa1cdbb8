package order

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/pkg/auth"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/resilience"
	"github.com/orderflow/orderflow/pkg/web"
)

// orderResponse is the order as the API shows it: every field is always
// present, absent values are null.
type orderResponse struct {
	ID            string         `json:"id"`
	CustomerID    string         `json:"customer_id"`
	Email         *string        `json:"email"`
	Status        string         `json:"status"`
	Items         []itemResponse `json:"items"`
	TotalCents    int64          `json:"total_cents"`
	Currency      string         `json:"currency"`
	PaymentID     *string        `json:"payment_id"`
	FailureReason *string        `json:"failure_reason"`
	CreatedAt     time.Time      `json:"created_at"`
	UpdatedAt     time.Time      `json:"updated_at"`
}

type itemResponse struct {
	SKU            string `json:"sku"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

func newOrderResponse(o Order) orderResponse {
	items := make([]itemResponse, len(o.Items))
	for i, it := range o.Items {
		items[i] = itemResponse{SKU: it.SKU, Quantity: it.Quantity, UnitPriceCents: it.UnitPriceCents}
	}
	return orderResponse{
		ID:            o.ID,
		CustomerID:    o.CustomerID,
		Email:         nullable(o.Email),
		Status:        o.Status,
		Items:         items,
		TotalCents:    o.TotalCents,
		Currency:      o.Currency,
		PaymentID:     nullable(o.PaymentID),
		FailureReason: nullable(o.FailureReason),
		CreatedAt:     o.CreatedAt.UTC(),
		UpdatedAt:     o.UpdatedAt.UTC(),
	}
}

// order is the order r shows: what a replay of a confirmed order's key
// renders again.
func (r orderResponse) order() Order {
	o := Order{ID: r.ID, CustomerID: r.CustomerID, Email: deref(r.Email), Status: r.Status,
		Items: make([]Item, len(r.Items)), TotalCents: r.TotalCents, Currency: r.Currency,
		PaymentID: deref(r.PaymentID), FailureReason: deref(r.FailureReason),
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
	for i, it := range r.Items {
		o.Items[i] = Item(it)
	}
	return o
}

// createRequest is the body of POST /v1/orders.
type createRequest struct {
	CustomerID    string              `json:"customer_id"`
	Email         string              `json:"email"`
	Items         []createItemRequest `json:"items"`
	PaymentMethod string              `json:"payment_method"`
}

type createItemRequest struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// validated converts the body to a CreateRequest and validates it.
func (in createRequest) validated() (CreateRequest, error) {
	req := CreateRequest{CustomerID: in.CustomerID, Email: in.Email, PaymentMethod: in.PaymentMethod}
	for _, it := range in.Items {
		req.Items = append(req.Items, ItemRequest{SKU: it.SKU, Quantity: it.Quantity})
	}
	if err := web.ValidationProblem(req.Validate()); err != nil {
		return CreateRequest{}, err
	}
	return req, nil
}

func handleOrderCreate(log *slog.Logger, svc *Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Idempotency-Key")
		if key == "" {
			writeError(w, r, log, web.NewProblem(http.StatusBadRequest, "missing_idempotency_key",
				"the Idempotency-Key header is required"))
			return
		}
		if utf8.RuneCountInString(key) > MaxKeyLength || !utf8.ValidString(key) {
			writeError(w, r, log, web.ValidationProblem(map[string]string{
				"Idempotency-Key": "must be 1 to 255 characters"}))
			return
		}
		var in createRequest
		if err := web.Decode(r, web.MaxBodyBytes, &in); err != nil {
			writeError(w, r, log, err)
			return
		}
		req, err := in.validated()
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		caller, _ := auth.FromContext(r.Context())
		out, replayed, err := svc.Create(r.Context(), caller, key, req)
		if err == nil {
			err = out.Err()
		}
		// The outcome renders the same for the first answer and a replay.
		if replayed {
			w.Header().Set("Idempotent-Replayed", "true")
		}
		if errors.Is(err, ErrUnavailable) {
			// Not before the open breakers half-open: a retry then would be
			// refused again at once.
			w.Header().Set("Retry-After", strconv.Itoa(resilience.RetryAfterSeconds(svc.RetryAfter())))
		}
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		w.Header().Set("Location", "/v1/orders/"+out.Order.ID)
		web.WriteJSON(w, http.StatusCreated, newOrderResponse(out.Order))
	})
}

func handleOrderGet(log *slog.Logger, svc *Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		caller, _ := auth.FromContext(r.Context())
		o, err := svc.Get(r.Context(), caller, chi.URLParam(r, "id"))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, newOrderResponse(o))
	})
}

func handleOrderList(log *slog.Logger, svc *Service) http.Handler {
	type response struct {
		Orders     []orderResponse `json:"orders"`
		NextCursor string          `json:"next_cursor"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		problems := map[string]string{}
		customerID := q.Get("customer_id")
		switch {
		case len(customerID) > MaxIDLength:
			problems["customer_id"] = "must be at most 64 characters"
		case !utf8.ValidString(customerID) || hasControl(customerID):
			problems["customer_id"] = "must be UTF-8 without control characters"
		}
		limit := parseLimit(q.Get("limit"), problems)
		if err := web.ValidationProblem(problems); err != nil {
			writeError(w, r, log, err)
			return
		}
		caller, _ := auth.FromContext(r.Context())
		page, err := svc.List(r.Context(), caller, customerID, q.Get("cursor"), limit)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		resp := response{Orders: make([]orderResponse, len(page.Orders)), NextCursor: page.NextCursor}
		for i, o := range page.Orders {
			resp.Orders[i] = newOrderResponse(o)
		}
		web.WriteJSON(w, http.StatusOK, resp)
	})
}

func handleOrderCancel(log *slog.Logger, svc *Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		caller, _ := auth.FromContext(r.Context())
		o, err := svc.Cancel(r.Context(), caller, chi.URLParam(r, "id"))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, newOrderResponse(o))
	})
}

// compensationResponse is a compensation as GET /admin/compensations shows
// it; absent values are null.
type compensationResponse struct {
	OrderID             string     `json:"order_id"`
	Status              string     `json:"status"`
	Attempts            int        `json:"attempts"`
	LastError           *string    `json:"last_error"`
	NeedsAttentionSince *time.Time `json:"needs_attention_since"`
}

func newCompensationResponse(c Compensation) compensationResponse {
	r := compensationResponse{OrderID: c.OrderID, Status: c.Status, Attempts: c.Attempts,
		LastError: nullable(c.LastError)}
	if !c.NeedsAttentionSince.IsZero() {
		r.NeedsAttentionSince = ptr(c.NeedsAttentionSince.UTC())
	}
	return r
}

// parseLimit reads the limit query parameter of a list (DefaultLimit when
// absent) into limit, or sets its problem.
func parseLimit(v string, problems map[string]string) int {
	if v == "" {
		return DefaultLimit
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > MaxLimit {
		problems["limit"] = "must be an integer from 1 to 100"
	}
	return n
}

func handleCompensationList(log *slog.Logger, svc *Service) http.Handler {
	type response struct {
		Compensations []compensationResponse `json:"compensations"`
		NextCursor    string                 `json:"next_cursor"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		problems := map[string]string{}
		limit := parseLimit(q.Get("limit"), problems)
		if err := web.ValidationProblem(problems); err != nil {
			writeError(w, r, log, err)
			return
		}
		page, err := svc.NeedingAttention(r.Context(), q.Get("cursor"), limit)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		resp := response{Compensations: make([]compensationResponse, len(page.Compensations)), NextCursor: page.NextCursor}
		for i, c := range page.Compensations {
			resp.Compensations[i] = newCompensationResponse(c)
		}
		web.WriteJSON(w, http.StatusOK, resp)
	})
}

// handleCompensationRetry answers 202: the compensation is due, and the
// recovery loop's next round runs it.
func handleCompensationRetry(log *slog.Logger, svc *Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		caller, _ := auth.FromContext(r.Context())
		c, err := svc.RetryCompensation(r.Context(), caller, chi.URLParam(r, "order_id"))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusAccepted, newCompensationResponse(c))
	})
}

// writeError maps an error to its problem response; only 5xx are logged,
// except a failed order's 503 (an answer; the saga logged its cause). A
// failure of a stored order names it (order_id).
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var p *web.Problem
	var rejected *RejectedError
	var declined *DeclinedError
	switch {
	case errors.As(err, &p):
	case errors.As(err, &rejected):
		p = web.NewProblem(http.StatusConflict, rejected.Code, rejectDetail(rejected.Code)).
			With("skus", nonNil(rejected.SKUs))
	case errors.As(err, &declined):
		p = web.NewProblem(http.StatusPaymentRequired, "payment_declined", "the payment was declined").
			With("decline_code", declined.DeclineCode)
	case errors.Is(err, ErrUnavailable):
		p = web.NewProblem(http.StatusServiceUnavailable, "dependency_unavailable",
			"a service the order depends on is unavailable; retry with the same Idempotency-Key")
	case errors.Is(err, ErrKeyReused):
		p = web.NewProblem(http.StatusUnprocessableEntity, "idempotency_key_reused",
			"this Idempotency-Key was used with a different request body")
	case errors.Is(err, ErrInProgress):
		w.Header().Set("Retry-After", "1")
		p = web.NewProblem(http.StatusConflict, "idempotency_in_progress",
			"a request with this Idempotency-Key is still running; retry later")
	case errors.Is(err, ErrNotFound):
		p = web.NewProblem(http.StatusNotFound, "not_found", "no such order")
	case errors.Is(err, ErrNoCompensation):
		p = web.NewProblem(http.StatusConflict, "no_compensation", "the order has no outstanding compensation to retry")
	case errors.Is(err, ErrNotCancellable):
		p = web.NewProblem(http.StatusConflict, "not_cancellable", "only a confirmed order can be cancelled")
	case errors.Is(err, ErrCustomerMismatch):
		p = web.NewProblem(http.StatusForbidden, "customer_mismatch", "customer_id must be the signed-in customer (or be left out)")
	case errors.Is(err, ErrCustomerRequired):
		p = web.ValidationProblem(map[string]string{"customer_id": "is required for an operator's list"}).(*web.Problem)
	case errors.Is(err, ErrBadCursor):
		p = web.NewProblem(http.StatusBadRequest, "bad_cursor", "the cursor is not one this API returned")
	case postgres.IsUnavailable(err):
		log.WarnContext(r.Context(), "database unavailable", "method", r.Method, "path", r.URL.Path, "error", err)
		p = web.Unavailable(w, "database_unavailable", "the database is unavailable; retry shortly", 1)
	default:
		p = web.NewProblem(http.StatusInternalServerError, "internal", "internal error")
	}
	var failed *OrderError
	if errors.As(err, &failed) && failed.OrderID != "" {
		p.With("order_id", failed.OrderID)
	}
	if p.Status >= 500 && !errors.Is(err, ErrUnavailable) {
		log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path,
			"status", p.Status, "error", err)
	}
	web.WriteProblem(w, p)
}

func rejectDetail(code string) string {
	if code == "unknown_sku" {
		return "some SKUs are unknown; nothing was reserved"
	}
	return "some items are out of stock; nothing was reserved"
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
