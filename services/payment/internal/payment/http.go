package payment

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/orderflow/orderflow/pkg/auth"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/resilience"
	"github.com/orderflow/orderflow/pkg/web"
)

type createRequest struct {
	OrderID     string `json:"order_id"`
	AmountCents int64  `json:"amount_cents"`
	Currency    string `json:"currency"`
	Method      string `json:"method"`
}

// parseCreate validates a decoded body and returns it in canonical form.
func parseCreate(in createRequest) (CreateRequest, error) {
	req, problems := CreateRequest(in).Normalize()
	if err := web.ValidationProblem(problems); err != nil {
		return CreateRequest{}, err
	}
	return req, nil
}

// decodeCreate is the body half of the create path without the transport
// checks, so the fuzz test can drive it with arbitrary bytes.
func decodeCreate(body []byte) (CreateRequest, error) {
	var in createRequest
	if err := web.DecodeBytes(body, &in); err != nil {
		return CreateRequest{}, err
	}
	return parseCreate(in)
}

type paymentResponse struct {
	ID               string    `json:"id"`
	OrderID          string    `json:"order_id"`
	Status           string    `json:"status"`
	AmountCents      int64     `json:"amount_cents"`
	Currency         string    `json:"currency"`
	Method           string    `json:"method"`
	ProviderChargeID string    `json:"provider_charge_id"`
	CreatedAt        time.Time `json:"created_at"`
	UpdatedAt        time.Time `json:"updated_at"`
}

func toPaymentResponse(p Payment) paymentResponse {
	return paymentResponse{
		ID: p.ID, OrderID: p.OrderID, Status: p.Status, AmountCents: p.AmountCents,
		Currency: p.Currency, Method: p.Method, ProviderChargeID: p.ProviderChargeID,
		CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt,
	}
}

// payment is the payment r shows: what a replay of a captured payment's key
// renders again.
func (r paymentResponse) payment() Payment {
	return Payment{
		ID: r.ID, OrderID: r.OrderID, Status: r.Status, AmountCents: r.AmountCents,
		Currency: r.Currency, Method: r.Method, ProviderChargeID: r.ProviderChargeID,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
	}
}

// providerSettingsRequest is the body of PUT /admin/provider: a field left
// out keeps its value.
type providerSettingsRequest struct {
	LatencyMS *int     `json:"latency_ms"`
	ErrorRate *float64 `json:"error_rate"`
	Outage    *bool    `json:"outage"`
}

func handlePaymentCreate(log *slog.Logger, svc *Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Idempotency-Key")
		if !ValidKey(key) {
			writeError(w, r, log, web.NewProblem(http.StatusBadRequest, "validation_failed",
				"the Idempotency-Key header is required and must be 1 to 255 characters of text").
				With("errors", map[string]string{"Idempotency-Key": "must be 1 to 255 characters of UTF-8 text without control characters"}))
			return
		}
		var in createRequest
		if err := web.Decode(r, web.MaxBodyBytes, &in); err != nil {
			writeError(w, r, log, err)
			return
		}
		req, err := parseCreate(in)
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
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusCreated, toPaymentResponse(out.Payment))
	})
}

func handlePaymentGet(log *slog.Logger, svc *Service) http.Handler {
	return handlePaymentByID(log, svc.Get)
}

func handlePaymentList(log *slog.Logger, svc *Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		orderID, ok := parseID(r.URL.Query().Get("order_id"))
		if !ok {
			writeError(w, r, log, web.ValidationProblem(map[string]string{"order_id": "is required and must be a UUID"}))
			return
		}
		ps, err := svc.ListByOrder(r.Context(), orderID)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		out := struct {
			Payments []paymentResponse `json:"payments"`
		}{Payments: make([]paymentResponse, 0, len(ps))}
		for _, p := range ps {
			out.Payments = append(out.Payments, toPaymentResponse(p))
		}
		web.WriteJSON(w, http.StatusOK, out)
	})
}

func handlePaymentRefund(log *slog.Logger, svc *Service) http.Handler {
	return handlePaymentByID(log, svc.Refund)
}

// handlePaymentByID answers with the payment of the path's id as use, a
// read or a change, returns it; an id that is no UUID is no payment.
func handlePaymentByID(log *slog.Logger, use func(ctx context.Context, id string) (Payment, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := parseID(chi.URLParam(r, "id"))
		if !ok {
			writeError(w, r, log, ErrNotFound)
			return
		}
		p, err := use(r.Context(), id)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, toPaymentResponse(p))
	})
}

// handleProviderConfig reads (GET) or changes (PUT) the simulated provider.
// The provider's own answer is passed on, so the operator sees exactly what
// the provider now runs with.
func handleProviderConfig(log *slog.Logger, svc *Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var change *ProviderSettings
		if r.Method == http.MethodPut {
			var in providerSettingsRequest
			if err := web.Decode(r, web.MaxBodyBytes, &in); err != nil {
				writeError(w, r, log, err)
				return
			}
			change = (*ProviderSettings)(&in)
			if err := web.ValidationProblem(change.Validate()); err != nil {
				writeError(w, r, log, err)
				return
			}
		}
		reply, err := svc.ProviderConfig(r.Context(), change)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		ct := "application/json"
		if reply.Status >= 400 {
			ct = "application/problem+json"
		}
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(reply.Status)
		_, _ = w.Write(reply.Body)
	})
}

// parseID accepts only the canonical UUID form, so a bad id is a plain 404
// and never reaches the database as a cast error.
func parseID(s string) (string, bool) {
	id, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		return "", false
	}
	return id.String(), true
}

// writeError maps an error to its problem response. Only 5xx are logged: a
// warning, under a message of its own, for a dependency that is down or
// slow (an answer the contract foresees), an error for anything else.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var p *web.Problem
	var declined *DeclinedError
	warning := ""
	switch {
	case errors.As(err, &p):
	case errors.As(err, &declined):
		p = web.NewProblem(http.StatusPaymentRequired, "payment_declined", "the card was declined: "+declined.DeclineCode).
			With("decline_code", declined.DeclineCode)
	case errors.Is(err, ErrNotFound):
		p = web.NewProblem(http.StatusNotFound, "not_found", "no such payment")
	case errors.Is(err, ErrKeyReused):
		p = web.NewProblem(http.StatusUnprocessableEntity, "idempotency_key_reused",
			"the Idempotency-Key was already used with a different request body")
	case errors.Is(err, ErrInProgress):
		w.Header().Set("Retry-After", "1")
		p = web.NewProblem(http.StatusConflict, "idempotency_in_progress",
			"a request with this Idempotency-Key is still in progress; retry later")
	case errors.Is(err, ErrUnsettled):
		// The order service's compensation retries the list later.
		warning = "payment intent not settled"
		w.Header().Set("Retry-After", resilience.RetryAfterHeader(err))
		p = web.NewProblem(http.StatusServiceUnavailable, "payment_unsettled",
			"a payment of this order has an outcome not yet confirmed by the provider; retry shortly")
	case errors.Is(err, ErrProviderTimeout):
		warning = "payment provider timed out"
		w.Header().Set("Retry-After", "1")
		p = web.NewProblem(http.StatusGatewayTimeout, "provider_timeout",
			"the payment provider did not answer in time; retry with the same Idempotency-Key")
	case errors.Is(err, ErrProviderUnavailable):
		warning = "payment provider unavailable"
		// An open breaker says how long it stays open.
		w.Header().Set("Retry-After", resilience.RetryAfterHeader(err))
		p = web.NewProblem(http.StatusServiceUnavailable, "provider_unavailable",
			"the payment provider is unavailable; retry with the same Idempotency-Key")
	case postgres.IsUnavailable(err):
		warning = "database unavailable"
		p = web.Unavailable(w, "database_unavailable", "the database is unavailable; retry shortly", 1)
	default:
		p = web.NewProblem(http.StatusInternalServerError, "internal", "internal error")
	}
	switch {
	case warning != "":
		log.WarnContext(r.Context(), warning, "method", r.Method, "path", r.URL.Path, "error", err)
	case p.Status >= 500:
		log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path,
			"status", p.Status, "error", err)
	}
	web.WriteProblem(w, p)
}
