package payment

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

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

// declineProblem is the 402 body stored with the key and replayed.
func declineProblem(code string) *web.Problem {
	return web.NewProblem(http.StatusPaymentRequired, "payment_declined", "the card was declined: "+code).
		With("decline_code", code)
}

// replayBody re-encodes a stored response exactly as it was first written:
// jsonb keeps the data but not the key order or spacing, and a replay must be
// byte for byte the first answer.
func replayBody(status int, stored []byte) ([]byte, error) {
	if status == http.StatusCreated {
		var p paymentResponse
		if err := json.Unmarshal(stored, &p); err != nil {
			return nil, err
		}
		return json.Marshal(p)
	}
	// Problems are written from a map, whose keys encoding/json sorts.
	dec := json.NewDecoder(bytes.NewReader(stored))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return json.Marshal(m)
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
		resp, err := svc.Create(r.Context(), key, req)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		ct := "application/json"
		if resp.Status >= 400 {
			ct = "application/problem+json"
		}
		w.Header().Set("Content-Type", ct)
		if resp.Replayed {
			w.Header().Set("Idempotent-Replayed", "true")
		}
		w.WriteHeader(resp.Status)
		_, _ = w.Write(append(resp.Body, '\n'))
	})
}

func handlePaymentGet(log *slog.Logger, svc *Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := parseID(chi.URLParam(r, "id"))
		if !ok {
			writeError(w, r, log, ErrNotFound)
			return
		}
		p, err := svc.Get(r.Context(), id)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, toPaymentResponse(p))
	})
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
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := parseID(chi.URLParam(r, "id"))
		if !ok {
			writeError(w, r, log, ErrNotFound)
			return
		}
		p, err := svc.Refund(r.Context(), id)
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
			change = &ProviderSettings{}
			if err := web.Decode(r, web.MaxBodyBytes, change); err != nil {
				writeError(w, r, log, err)
				return
			}
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

// writeError maps an error to its problem response; only 5xx are logged.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var p *web.Problem
	var decline *DeclineError
	switch {
	case errors.As(err, &p):
	case errors.As(err, &decline):
		p = declineProblem(decline.Code)
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
		log.WarnContext(r.Context(), "payment intent not settled", "err", err, "path", r.URL.Path)
		w.Header().Set("Retry-After", resilience.RetryAfterHeader(err))
		p = web.NewProblem(http.StatusServiceUnavailable, "payment_unsettled",
			"a payment of this order has an outcome not yet confirmed by the provider; retry shortly")
	case errors.Is(err, ErrProviderTimeout):
		log.WarnContext(r.Context(), "payment provider timed out", "err", err, "path", r.URL.Path)
		w.Header().Set("Retry-After", "1")
		p = web.NewProblem(http.StatusGatewayTimeout, "provider_timeout",
			"the payment provider did not answer in time; retry with the same Idempotency-Key")
	case errors.Is(err, ErrProviderUnavailable):
		log.WarnContext(r.Context(), "payment provider unavailable", "err", err, "path", r.URL.Path)
		// An open breaker says how long it stays open.
		w.Header().Set("Retry-After", resilience.RetryAfterHeader(err))
		p = web.NewProblem(http.StatusServiceUnavailable, "provider_unavailable",
			"the payment provider is unavailable; retry with the same Idempotency-Key")
	case postgres.IsUnavailable(err):
		log.WarnContext(r.Context(), "database unavailable", "method", r.Method, "path", r.URL.Path, "error", err)
		p = web.Unavailable(w, "database_unavailable", "the database is unavailable; retry shortly", 1)
	default:
		log.ErrorContext(r.Context(), "request failed", "err", err, "method", r.Method, "path", r.URL.Path)
		p = web.NewProblem(http.StatusInternalServerError, "internal", "internal error")
	}
	web.WriteProblem(w, p)
}
