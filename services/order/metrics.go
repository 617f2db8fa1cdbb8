package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/orderflow/orderflow/pkg/web"
	"github.com/orderflow/orderflow/services/order/internal/order"
)

// observeCompensations exports the recovery loop's compensations, read when
// scraped: orderflow_compensation_needs_attention, how many orders (over
// all replicas, from the database) have a compensation the loop gave up on
// and an operator must look at (GET /admin/compensations) — the alert fires
// while it is above 0 — and orderflow_compensation_attempts_total{outcome},
// this replica's attempts by outcome (done, retry, needs_attention).
func observeCompensations(meter metric.Meter, svc *order.Service) error {
	_, err := meter.Int64ObservableGauge("orderflow.compensation.needs_attention",
		metric.WithDescription("Orders whose compensation (refund, release) failed every automatic attempt and waits for an operator."),
		metric.WithInt64Callback(func(ctx context.Context, o metric.Int64Observer) error {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			n, err := svc.CountNeedingAttention(ctx)
			if err != nil {
				return err
			}
			o.Observe(int64(n))
			return nil
		}))
	if err != nil {
		return fmt.Errorf("compensation needs_attention metric: %w", err)
	}
	_, err = meter.Int64ObservableCounter("orderflow.compensation.attempts",
		metric.WithDescription("The recovery loop's compensation attempts by outcome: done, retry (failed, retried later), needs_attention (failed for the last time)."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			for outcome, n := range svc.CompensationOutcomes() {
				o.Observe(int64(n), metric.WithAttributes(attribute.String("outcome", outcome)))
			}
			return nil
		}))
	if err != nil {
		return fmt.Errorf("compensation attempts metric: %w", err)
	}
	return nil
}

// sagaMetrics counts the outcome of every order the saga finishes, from the
// answer to POST /v1/orders: orderflow_orders_total{status} and
// orderflow_saga_duration_seconds{status}. The answer maps one to one to
// the order's final status (201 confirmed, 402 payment_failed, 409
// out_of_stock/unknown_sku rejected, 503 failed); replays
// (Idempotent-Replayed) and answers that stored no order (4xx input errors,
// 409 idempotency_in_progress, 422, 429) are not counted, so each order
// counts once. Orders the recovery loop fails and cancellations do not pass
// here; they are visible in the request metrics of their own routes.
func sagaMetrics(meter metric.Meter) func(http.Handler) http.Handler {
	orders, _ := meter.Int64Counter("orderflow.orders",
		metric.WithDescription("Orders finished by the saga, by final status."))
	duration, _ := meter.Float64Histogram("orderflow.saga.duration", metric.WithUnit("s"),
		metric.WithDescription("Time from order creation to its final status, by final status."),
		metric.WithExplicitBucketBoundaries(web.DurationBuckets...))
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost || r.URL.Path != "/v1/orders" {
				next.ServeHTTP(w, r)
				return
			}
			rec := &statusRecorder{ResponseWriter: w}
			start := time.Now()
			next.ServeHTTP(rec, r)
			if w.Header().Get("Idempotent-Replayed") != "" {
				return
			}
			status := finalStatus(rec.status, rec.body.Bytes())
			if status == "" {
				return
			}
			attrs := metric.WithAttributes(attribute.String("status", status))
			orders.Add(r.Context(), 1, attrs)
			duration.Record(r.Context(), time.Since(start).Seconds(), attrs)
		})
	}
}

// finalStatus maps a create-order answer to the order's status, or "" when
// the answer stored no order.
func finalStatus(code int, body []byte) string {
	switch code {
	case http.StatusCreated:
		return "confirmed"
	case http.StatusPaymentRequired:
		return "payment_failed"
	case http.StatusServiceUnavailable:
		return "failed"
	case http.StatusConflict:
		var p struct {
			Code string `json:"code"`
		}
		_ = json.Unmarshal(body, &p)
		if p.Code == "out_of_stock" || p.Code == "unknown_sku" {
			return "rejected"
		}
	}
	return ""
}

// statusRecorder keeps the status and, for a 409, the problem body, whose
// code tells a rejection from an idempotency conflict.
type statusRecorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	if s.status == http.StatusConflict && s.body.Len() < 64<<10 {
		s.body.Write(b)
	}
	return s.ResponseWriter.Write(b)
}
