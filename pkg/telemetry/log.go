// Package telemetry sets up the logs (and, later, traces and metrics) every
// Orderflow service emits.
package telemetry

import (
	"io"
	"log/slog"
	"strings"
)

// NewLogger returns a JSON logger on w at the given level ("debug", "info",
// "warn", "error"), tagged with the service name.
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
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})).With("service", service)
}
