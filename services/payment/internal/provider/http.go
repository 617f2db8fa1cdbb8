package provider

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/pkg/currency"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/web"
)

type chargeRequest struct {
	AmountCents int64  `json:"amount_cents"`
	Currency    string `json:"currency"`
	Method      string `json:"method"`
}

func (r chargeRequest) validate(key string) error {
	problems := map[string]string{}
	if r.AmountCents <= 0 {
		problems["amount_cents"] = "must be greater than 0"
	}
	if !currency.IsCode(r.Currency) {
		problems["currency"] = "must be a 3-letter ISO 4217 code such as USD"
	}
	if r.Method == "" {
		problems["method"] = "is required"
	}
	if len(key) > MaxKeyLen {
		problems["Idempotency-Key"] = "must be at most 255 characters"
	}
	return web.ValidationProblem(problems)
}

type chargeResponse struct {
	ID          string `json:"id"`
	Status      string `json:"status"`
	AmountCents int64  `json:"amount_cents"`
	Currency    string `json:"currency"`
}

func toChargeResponse(c Charge) chargeResponse {
	return chargeResponse{ID: c.ID, Status: c.Status, AmountCents: c.AmountCents, Currency: c.Currency}
}

type configBody struct {
	LatencyMS int     `json:"latency_ms"`
	ErrorRate float64 `json:"error_rate"`
	Outage    bool    `json:"outage"`
}

type configPatch struct {
	LatencyMS *int     `json:"latency_ms"`
	ErrorRate *float64 `json:"error_rate"`
	Outage    *bool    `json:"outage"`
}

func toConfigBody(c Config) configBody {
	return configBody{LatencyMS: c.LatencyMS, ErrorRate: c.ErrorRate, Outage: c.Outage}
}

// handleChargeCreate charges a card. The optional Idempotency-Key header
// makes a repeat (a retry after a lost answer) return the first charge,
// marked Idempotent-Replayed: true, as real processors do.
func handleChargeCreate(log *slog.Logger, sim *Simulator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req chargeRequest
		if err := web.Decode(r, web.MaxBodyBytes, &req); err != nil {
			writeError(w, r, log, err)
			return
		}
		key := r.Header.Get("Idempotency-Key")
		if err := req.validate(key); err != nil {
			writeError(w, r, log, err)
			return
		}
		if err := sim.Fault(r.Context()); err != nil {
			writeError(w, r, log, err)
			return
		}
		c, replayed, err := sim.Charge(r.Context(), ChargeRequest{AmountCents: req.AmountCents,
			Currency: req.Currency, Method: req.Method, IdempotencyKey: key})
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if replayed {
			w.Header().Set("Idempotent-Replayed", "true")
		}
		web.WriteJSON(w, http.StatusCreated, toChargeResponse(c))
	})
}

// handleChargeList answers GET /v1/charges?idempotency_key=…: the charge
// made with that key, as a list of zero or one, so "no such charge" is a 200
// with an empty list and never confused with a 404 from a wrong path.
func handleChargeList(log *slog.Logger, sim *Simulator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.URL.Query().Get("idempotency_key")
		if key == "" || len(key) > MaxKeyLen {
			writeError(w, r, log, web.ValidationProblem(map[string]string{
				"idempotency_key": "is required and must be at most 255 characters"}))
			return
		}
		if err := sim.LookupFault(); err != nil {
			writeError(w, r, log, err)
			return
		}
		out := struct {
			Data []chargeResponse `json:"data"`
		}{Data: []chargeResponse{}}
		c, err := sim.ByKey(r.Context(), key)
		switch {
		case err == nil:
			out.Data = append(out.Data, toChargeResponse(c))
		case !errors.Is(err, ErrNotFound):
			writeError(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, out)
	})
}

func handleChargeGet(log *slog.Logger, sim *Simulator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := sim.LookupFault(); err != nil {
			writeError(w, r, log, err)
			return
		}
		c, err := sim.Get(r.Context(), chi.URLParam(r, "id"))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, toChargeResponse(c))
	})
}

func handleChargeRefund(log *slog.Logger, sim *Simulator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := sim.Fault(r.Context()); err != nil {
			writeError(w, r, log, err)
			return
		}
		c, err := sim.Refund(r.Context(), chi.URLParam(r, "id"))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, toChargeResponse(c))
	})
}

// handleTotals sums the ledger, for an operator or the fault suite's
// money-conservation check. Like the other admin calls it ignores the
// simulated faults.
func handleTotals(log *slog.Logger, sim *Simulator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t, err := sim.Totals(r.Context())
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, struct {
			Charges       int64 `json:"charges"`
			CapturedCents int64 `json:"captured_cents"`
			Refunds       int64 `json:"refunds"`
			RefundedCents int64 `json:"refunded_cents"`
		}{t.Charges, t.CapturedCents, t.Refunds, t.RefundedCents})
	})
}

func handleConfigGet(sim *Simulator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		web.WriteJSON(w, http.StatusOK, toConfigBody(sim.Config()))
	})
}

// handleConfigPut applies the fields present in the body; absent fields keep
// their value, so {"outage":true} starts an outage and leaves latency alone.
func handleConfigPut(log *slog.Logger, sim *Simulator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p configPatch
		if err := web.Decode(r, web.MaxBodyBytes, &p); err != nil {
			writeError(w, r, log, err)
			return
		}
		cfg, problems := sim.Update(Patch(p))
		if err := web.ValidationProblem(problems); err != nil {
			writeError(w, r, log, err)
			return
		}
		log.InfoContext(r.Context(), "provider config changed",
			"latency_ms", cfg.LatencyMS, "error_rate", cfg.ErrorRate, "outage", cfg.Outage)
		web.WriteJSON(w, http.StatusOK, toConfigBody(cfg))
	})
}

func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var p *web.Problem
	var declined *DeclinedError
	switch {
	case errors.As(err, &p):
	case errors.As(err, &declined):
		p = web.NewProblem(http.StatusPaymentRequired, declined.DeclineCode, "the card was declined")
	case errors.Is(err, ErrNotFound):
		p = web.NewProblem(http.StatusNotFound, "not_found", "no such charge")
	case errors.Is(err, ErrKeyReused):
		p = web.NewProblem(http.StatusConflict, "idempotency_key_reused",
			"the idempotency key was used for a charge with other parameters")
	case errors.Is(err, ErrOutage):
		w.Header().Set("Retry-After", "1")
		p = web.NewProblem(http.StatusServiceUnavailable, "outage", "the provider is in a simulated outage")
	case errors.Is(err, ErrInjected):
		p = web.NewProblem(http.StatusInternalServerError, "internal", "simulated provider error")
	case r.Context().Err() != nil:
		// The caller hung up while the simulated latency ran; nothing was
		// charged and nobody reads this answer.
		p = web.NewProblem(http.StatusServiceUnavailable, "cancelled", "the request was cancelled")
	case postgres.IsUnavailable(err):
		log.WarnContext(r.Context(), "database unavailable", "method", r.Method, "path", r.URL.Path, "error", err)
		p = web.Unavailable(w, "database_unavailable", "the provider's database is unavailable; retry shortly", 1)
	default:
		log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		p = web.NewProblem(http.StatusInternalServerError, "internal", "internal error")
	}
	web.WriteProblem(w, p)
}
