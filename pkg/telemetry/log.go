// Package telemetry sets up what every Orderflow service emits: JSON logs
// carrying trace ids, OpenTelemetry traces exported over OTLP, and metrics
// served for Prometheus (text format, or OpenMetrics with trace-id
// exemplars). It instruments HTTP (servers and clients), pgx and go-redis;
// every other package creates its own instruments on a meter from MeterFor.
package telemetry

import (
	"context"
	"io"
	"log/slog"
	"strings"

	"go.opentelemetry.io/otel/trace"
)

// NewLogger returns a JSON logger on w at the given level ("debug", "info",
// "warn", "error"), tagged with the service name. Every line logged with a
// context that carries a span gets its trace_id and span_id.
func NewLogger(w io.Writer, service, level string) *slog.Logger {
	var l slog.Level
	switch strings.ToLower(level) {
	case "debug":
		l = slog.LevelDebug
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		l = slog.LevelInfo
	}
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})
	return slog.New(traceHandler{h}).With("service", service)
}

// traceHandler adds the span context of each record's ctx.
type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(attrs)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}
