package inventory

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/web"
)

type productResponse struct {
	SKU        string `json:"sku"`
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
	Currency   string `json:"currency"`
	Available  int    `json:"available"`
}

func toProductResponse(p Product) productResponse {
	return productResponse{SKU: p.SKU, Name: p.Name, PriceCents: p.PriceCents, Currency: p.Currency, Available: p.Available}
}

type reservedItemResponse struct {
	SKU            string `json:"sku"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

type reservationResponse struct {
	OrderID   string                 `json:"order_id"`
	Status    string                 `json:"status"`
	Items     []reservedItemResponse `json:"items"`
	ExpiresAt time.Time              `json:"expires_at"`
}

func toReservationResponse(r Reservation) reservationResponse {
	items := make([]reservedItemResponse, len(r.Items))
	for i, it := range r.Items {
		items[i] = reservedItemResponse{SKU: it.SKU, Quantity: it.Quantity, UnitPriceCents: it.UnitPriceCents}
	}
	return reservationResponse{OrderID: r.OrderID.String(), Status: r.Status, Items: items, ExpiresAt: r.ExpiresAt.UTC()}
}

func handleProductGet(log *slog.Logger, svc *Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, cached, err := svc.Product(r.Context(), chi.URLParam(r, "sku"))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if cached {
			w.Header().Set("X-Cache", "HIT")
		} else {
			w.Header().Set("X-Cache", "MISS")
		}
		writeCacheable(w, r, toProductResponse(p), false)
	})
}

func handleProductList(log *slog.Logger, svc *Service) http.Handler {
	type response struct {
		Products   []productResponse `json:"products"`
		NextCursor string            `json:"next_cursor,omitempty"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit, err := parseLimit(r.URL.Query().Get("limit"))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		ps, next, err := svc.Products(r.Context(), limit, r.URL.Query().Get("cursor"))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		resp := response{Products: make([]productResponse, len(ps)), NextCursor: next}
		for i, p := range ps {
			resp.Products[i] = toProductResponse(p)
		}
		// A full page is about 10 KiB of JSON: worth gzip.
		writeCacheable(w, r, resp, true)
	})
}

// parseLimit reads the page size: DefaultLimit when absent, else an integer
// in 1..MaxLimit.
func parseLimit(s string) (int, error) {
	if s == "" {
		return DefaultLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxLimit {
		return 0, web.ValidationProblem(map[string]string{"limit": "must be an integer between 1 and " + strconv.Itoa(MaxLimit)})
	}
	return n, nil
}

func handleStockPut(log *slog.Logger, svc *Service) http.Handler {
	type request struct {
		// A pointer, so a missing field is told apart from 0.
		Available *int64 `json:"available"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req request
		if err := web.Decode(r, web.MaxBodyBytes, &req); err != nil {
			writeError(w, r, log, err)
			return
		}
		switch {
		case req.Available == nil:
			writeError(w, r, log, web.ValidationProblem(map[string]string{"available": "is required"}))
			return
		case *req.Available < 0 || *req.Available > MaxStock:
			writeError(w, r, log, web.ValidationProblem(map[string]string{"available": "must be an integer between 0 and 1000000000"}))
			return
		}
		p, err := svc.SetStock(r.Context(), chi.URLParam(r, "sku"), int(*req.Available))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, toProductResponse(p))
	})
}

// reserveRequest is the body of POST /v1/reservations.
type reserveRequest struct {
	OrderID string `json:"order_id"`
	Items   []struct {
		SKU      string `json:"sku"`
		Quantity int    `json:"quantity"`
	} `json:"items"`
}

// validate checks the request against the contract and returns what the
// service needs, or a 400 validation problem listing every bad field.
func (req reserveRequest) validate() (uuid.UUID, []Item, error) {
	items := make([]Item, len(req.Items))
	for i, it := range req.Items {
		items[i] = Item{SKU: it.SKU, Quantity: it.Quantity}
	}
	problems := ValidateItems(items)
	id, err := ParseOrderID(req.OrderID)
	if err != nil {
		problems["order_id"] = err.Error()
	}
	if err := web.ValidationProblem(problems); err != nil {
		return uuid.Nil, nil, err
	}
	return id, items, nil
}

// decodeReservation decodes and validates a reservation request body; the
// handler and the fuzz test share it.
func decodeReservation(body []byte) (uuid.UUID, []Item, error) {
	var req reserveRequest
	if err := web.DecodeBytes(body, &req); err != nil {
		return uuid.Nil, nil, err
	}
	return req.validate()
}

func handleReservationCreate(log *slog.Logger, svc *Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req reserveRequest
		if err := web.Decode(r, web.MaxBodyBytes, &req); err != nil {
			writeError(w, r, log, err)
			return
		}
		orderID, items, err := req.validate()
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		res, created, err := svc.Reserve(r.Context(), orderID, items)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		status := http.StatusOK
		if created {
			status = http.StatusCreated
			w.Header().Set("Location", "/v1/reservations/"+orderID.String())
		}
		web.WriteJSON(w, status, toReservationResponse(res))
	})
}

// handleReservation serves the calls on one reservation: get, commit and
// release differ only in the use case they call.
func handleReservation(log *slog.Logger, call func(*http.Request, uuid.UUID) (Reservation, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := ParseOrderID(chi.URLParam(r, "order_id"))
		if err != nil {
			writeError(w, r, log, web.ValidationProblem(map[string]string{"order_id": err.Error()}))
			return
		}
		res, err := call(r, id)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, toReservationResponse(res))
	})
}

func handleReservationGet(log *slog.Logger, svc *Service) http.Handler {
	return handleReservation(log, func(r *http.Request, id uuid.UUID) (Reservation, error) {
		return svc.Reservation(r.Context(), id)
	})
}

func handleReservationCommit(log *slog.Logger, svc *Service) http.Handler {
	return handleReservation(log, func(r *http.Request, id uuid.UUID) (Reservation, error) {
		return svc.Commit(r.Context(), id)
	})
}

func handleReservationRelease(log *slog.Logger, svc *Service) http.Handler {
	return handleReservation(log, func(r *http.Request, id uuid.UUID) (Reservation, error) {
		return svc.Release(r.Context(), id)
	})
}

// writeError maps an error to its problem response. Only 5xx are logged: the
// rest are the client's business and already in the request log.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var problem *web.Problem
	var stockErr *StockError
	switch {
	case errors.As(err, &problem):
		web.WriteProblem(w, problem)
	case errors.As(err, &stockErr):
		detail := "some items are out of stock"
		if stockErr.Code == CodeUnknownSKU {
			detail = "some skus are not in the catalogue"
		}
		web.WriteProblem(w, web.NewProblem(http.StatusConflict, stockErr.Code, detail).With("skus", stockErr.SKUs))
	case errors.Is(err, ErrNotFound):
		web.WriteProblem(w, web.NewProblem(http.StatusNotFound, "not_found", err.Error()))
	case errors.Is(err, ErrReservationNotActive):
		web.WriteProblem(w, web.NewProblem(http.StatusConflict, "reservation_not_active", err.Error()))
	case errors.Is(err, ErrBadCursor):
		web.WriteProblem(w, web.NewProblem(http.StatusBadRequest, "bad_cursor", "the cursor is not one this API issued"))
	case postgres.IsUnavailable(err):
		log.WarnContext(r.Context(), "database unavailable", "method", r.Method, "path", r.URL.Path, "error", err)
		web.WriteProblem(w, web.Unavailable(w, "database_unavailable", "the database is unavailable; retry shortly", 1))
	default:
		log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "error", err.Error())
		web.WriteProblem(w, web.NewProblem(http.StatusInternalServerError, "internal", "internal error"))
	}
}
