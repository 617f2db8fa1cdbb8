// Package migrations embeds the SQL migrations of every service, one folder
// per service, applied with goose at start-up.
package migrations

import (
	"embed"
	"io/fs"
)

//go:embed */*.sql
var files embed.FS

// For returns the migrations of one service ("order", "inventory",
// "payment", "notification", "identity", or "provider" for the simulated
// payment provider's ledger).
func For(service string) (fs.FS, error) {
	return fs.Sub(files, service)
}
