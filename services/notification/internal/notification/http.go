package notification

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/orderflow/orderflow/pkg/auth"
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

func newInvoiceResponse(inv Invoice) invoiceResponse {
	lines := make([]lineResponse, len(inv.Lines))
	for i, l := range inv.Lines {
		lines[i] = lineResponse(l)
	}
	return invoiceResponse{Number: inv.Number, OrderID: inv.OrderID, TotalCents: inv.TotalCents,
		Currency: inv.Currency, Lines: lines, CreatedAt: inv.CreatedAt.UTC()}
}

func newEmailResponse(em Email) emailResponse {
	r := emailResponse{To: em.To, Subject: em.Subject, Kind: em.Kind, OrderID: em.OrderID}
	if em.SentAt != nil {
		t := em.SentAt.UTC()
		r.SentAt = &t
	}
	return r
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

// handleInvoiceList answers GET /v1/invoices?order_id=: the caller's
// invoices of one order.
func handleInvoiceList(log *slog.Logger, svc *Service) http.Handler {
	return handleOrderList(log, "invoices", svc.Invoices, newInvoiceResponse)
}

// handleEmailList answers GET /v1/emails?order_id=: the e-mails sent to the
// caller about one order.
func handleEmailList(log *slog.Logger, svc *Service) http.Handler {
	return handleOrderList(log, "emails", svc.SentEmails, newEmailResponse)
}

// handleOrderList is the shape both reads share: what list finds for the
// caller and the order_id parameter, each rendered by render, as the one
// array member key of the body.
func handleOrderList[T, R any](log *slog.Logger, key string, list func(context.Context, auth.Principal, string) ([]T, error), render func(T) R) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		orderID, err := orderIDParam(r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		caller, _ := auth.FromContext(r.Context())
		found, err := list(r.Context(), caller, orderID)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		items := make([]R, len(found))
		for i, v := range found {
			items[i] = render(v)
		}
		web.WriteJSON(w, http.StatusOK, map[string][]R{key: items})
	})
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
