package notification

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/orderflow/orderflow/pkg/auth"
	"github.com/orderflow/orderflow/pkg/events"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/web"
)

type lineResponse struct {
	SKU            string `json:"sku"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

type invoiceResponse struct {
	Number     int64          `json:"number"`
	OrderID    string         `json:"order_id"`
	TotalCents int64          `json:"total_cents"`
	Currency   string         `json:"currency"`
	Lines      []lineResponse `json:"lines"`
	CreatedAt  time.Time      `json:"created_at"`
}

type emailResponse struct {
	To      string     `json:"to"`
	Subject string     `json:"subject"`
	Kind    string     `json:"kind"`
	OrderID string     `json:"order_id"`
	SentAt  *time.Time `json:"sent_at"`
}

// orderIDParam reads the required order_id query parameter, which must be
// a UUID in its canonical form (the column type; anything else could never
// match).
func orderIDParam(r *http.Request) (string, error) {
	v := r.URL.Query().Get("order_id")
	if v == "" {
		return "", web.ValidationProblem(map[string]string{"order_id": "is required"})
	}
	if !web.CanonicalUUID(v) {
		return "", web.ValidationProblem(map[string]string{"order_id": "must be a UUID in canonical form"})
	}
	return v, nil
}

func handleInvoiceList(log *slog.Logger, svc *Service) http.Handler {
	type response struct {
		Invoices []invoiceResponse `json:"invoices"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		orderID, err := orderIDParam(r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		caller, _ := auth.FromContext(r.Context())
		invs, err := svc.Invoices(r.Context(), caller, orderID)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		resp := response{Invoices: make([]invoiceResponse, 0, len(invs))}
		for _, inv := range invs {
			lines := make([]lineResponse, 0, len(inv.Lines))
			for _, l := range inv.Lines {
				lines = append(lines, lineResponse(l))
			}
			resp.Invoices = append(resp.Invoices, invoiceResponse{
				Number:     inv.Number,
				OrderID:    inv.OrderID,
				TotalCents: inv.TotalCents,
				Currency:   inv.Currency,
				Lines:      lines,
				CreatedAt:  inv.CreatedAt.UTC(),
			})
		}
		web.WriteJSON(w, http.StatusOK, resp)
	})
}

func handleEmailList(log *slog.Logger, svc *Service) http.Handler {
	type response struct {
		Emails []emailResponse `json:"emails"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		orderID, err := orderIDParam(r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		caller, _ := auth.FromContext(r.Context())
		ems, err := svc.SentEmails(r.Context(), caller, orderID)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		resp := response{Emails: make([]emailResponse, 0, len(ems))}
		for _, em := range ems {
			var sentAt *time.Time
			if em.SentAt != nil {
				t := em.SentAt.UTC()
				sentAt = &t
			}
			resp.Emails = append(resp.Emails, emailResponse{
				To:      em.To,
				Subject: em.Subject,
				Kind:    em.Kind,
				OrderID: em.OrderID,
				SentAt:  sentAt,
			})
		}
		web.WriteJSON(w, http.StatusOK, resp)
	})
}

// handleNotify runs both workers' handlers on one event inside the request:
// the invoice, then the e-mail over SMTP, and answers 200 when both are done.
// It exists so the benchmark can measure an order service that does this
// work before answering (ORDER_NOTIFY_INLINE). The handlers deduplicate by
// event id, so the same event arriving later from SQS changes nothing.
func handleNotify(log *slog.Logger, svc *Service) http.Handler {
	type response struct {
		EventID string `json:"event_id"`
		OrderID string `json:"order_id"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e events.Order
		if err := web.Decode(r, web.MaxBodyBytes, &e); err != nil {
			writeError(w, r, log, err)
			return
		}
		if err := e.Validate(); err != nil {
			writeError(w, r, log, web.ValidationProblem(map[string]string{"event": err.Error()}))
			return
		}
		if err := web.ValidationProblem(eventProblems(e)); err != nil {
			writeError(w, r, log, err)
			return
		}
		for _, handle := range []HandlerFunc{svc.HandleInvoice, svc.HandleEmail} {
			if err := handle(r.Context(), e); err != nil {
				if errors.Is(err, ErrMalformed) {
					err = web.ValidationProblem(map[string]string{"event": err.Error()})
				}
				writeError(w, r, log, err)
				return
			}
		}
		web.WriteJSON(w, http.StatusOK, response{EventID: e.ID, OrderID: e.OrderID})
	})
}

// eventProblems returns a field→problem map for what of e the database
// cannot store or could read as another id: ids not in canonical UUID form
// (uuid.Parse takes "(…)", which PostgreSQL refuses), a NUL, control
// characters in an identifier. Such an event is a 400, not a failed insert.
func eventProblems(e events.Order) map[string]string {
	problems := map[string]string{}
	for field, v := range map[string]string{"id": e.ID, "order_id": e.OrderID} {
		if !web.CanonicalUUID(v) {
			problems[field] = "must be a UUID in canonical form"
		}
	}
	ident := func(field, v string) {
		if !web.PlainText(v) {
			problems[field] = "must not hold control characters"
		}
	}
	ident("customer_id", e.CustomerID)
	ident("email", e.Email)
	ident("status", e.Status)
	ident("currency", e.Currency)
	for i, it := range e.Items {
		ident(fmt.Sprintf("items[%d].sku", i), it.SKU)
	}
	if strings.ContainsRune(e.FailureReason, 0) {
		problems["failure_reason"] = "must not hold NUL characters"
	}
	return problems
}

// writeError sends err as a problem: a *web.Problem as it is, anything else
// as a logged 500 without detail.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var p *web.Problem
	if errors.As(err, &p) {
		web.WriteProblem(w, p)
		return
	}
	if errors.Is(err, ErrNotFound) {
		web.WriteProblem(w, web.NewProblem(http.StatusNotFound, "not_found", "no invoice or e-mail of yours for this order"))
		return
	}
	if postgres.IsUnavailable(err) {
		log.WarnContext(r.Context(), "database unavailable", "method", r.Method, "path", r.URL.Path, "error", err)
		web.WriteProblem(w, web.Unavailable(w, "database_unavailable", "the database is unavailable; retry shortly", 1))
		return
	}
	log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "error", err.Error())
	web.WriteProblem(w, web.NewProblem(http.StatusInternalServerError, "internal", "internal error"))
}
