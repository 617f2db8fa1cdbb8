// Package env reads typed configuration from a getenv function, with defaults
// in code and every problem collected into one error, so a service reports
// all of its bad settings at once.
package env

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Masked stands for a secret in a log line: configuration logs itself
// with it in place of every secret.
const Masked = "***"

// RedactURL returns raw with its password masked, for a log line (a URL
// that does not parse is not shown at all).
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// Reader reads variables through getenv and remembers every problem.
type Reader struct {
	getenv func(string) string
	errs   []error
}

// New returns a Reader over getenv (os.Getenv in main, a map in tests).
func New(getenv func(string) string) *Reader { return &Reader{getenv: getenv} }

func (r *Reader) lookup(key string) string {
	return strings.TrimSpace(r.getenv(key))
}

// String returns the variable, or def when unset.
func (r *Reader) String(key, def string) string {
	if v := r.lookup(key); v != "" {
		return v
	}
	return def
}

// Required returns the variable and records an error when it is unset.
func (r *Reader) Required(key string) string {
	v := r.lookup(key)
	if v == "" {
		r.errs = append(r.errs, fmt.Errorf("%s is required", key))
	}
	return v
}

// Int returns the variable as an int, or def when unset.
func (r *Reader) Int(key string, def int) int {
	v := r.lookup(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s=%q is not an integer", key, v))
		return def
	}
	return n
}

// Float returns the variable as a float64, or def when unset.
func (r *Reader) Float(key string, def float64) float64 {
	v := r.lookup(key)
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s=%q is not a number", key, v))
		return def
	}
	return f
}

// Bool returns the variable as a bool, or def when unset.
func (r *Reader) Bool(key string, def bool) bool {
	v := r.lookup(key)
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s=%q is not a boolean", key, v))
		return def
	}
	return b
}

// Duration returns the variable as a time.Duration ("250ms", "5s"), or def
// when unset.
func (r *Reader) Duration(key string, def time.Duration) time.Duration {
	v := r.lookup(key)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		r.errs = append(r.errs, fmt.Errorf("%s=%q is not a duration such as 500ms or 5s", key, v))
		return def
	}
	return d
}

// Err returns every problem seen so far, joined, or nil.
func (r *Reader) Err() error { return errors.Join(r.errs...) }
