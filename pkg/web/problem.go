// Package web holds the HTTP building blocks every Orderflow service shares:
// JSON decoding with the contract's limits, RFC 9457 problem responses,
// middleware, health probes and a server that shuts down gracefully.
package web

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// ProblemTypeBase prefixes a problem's machine-readable code to form its type URI.
const ProblemTypeBase = "https://orderflow.dev/problems/"

// Problem is an RFC 9457 problem details body. Code is the stable,
// machine-readable error code of the API contract; Extra carries additional
// members such as "order_id" or "skus".
type Problem struct {
	Status int
	Code   string
	Title  string
	Detail string
	Extra  map[string]any
}

// Error makes a Problem usable as an error, so a service can return one and
// let its error writer send it unchanged.
func (p *Problem) Error() string {
	if p.Detail != "" {
		return p.Code + ": " + p.Detail
	}
	return p.Code
}

// MarshalJSON flattens Extra into the top-level object, as RFC 9457 extension
// members require.
func (p *Problem) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(p.Extra)+5)
	for k, v := range p.Extra {
		m[k] = v
	}
	m["type"] = ProblemTypeBase + p.Code
	m["title"] = p.Title
	m["status"] = p.Status
	m["detail"] = p.Detail
	m["code"] = p.Code
	return json.Marshal(m)
}

// NewProblem returns a problem with the given status, code and detail; the
// title is the status text.
func NewProblem(status int, code, detail string) *Problem {
	return &Problem{Status: status, Code: code, Title: http.StatusText(status), Detail: detail}
}

// With returns the problem with an extension member added.
func (p *Problem) With(key string, value any) *Problem {
	if p.Extra == nil {
		p.Extra = map[string]any{}
	}
	p.Extra[key] = value
	return p
}

// WriteProblem sends p as application/problem+json.
func WriteProblem(w http.ResponseWriter, p *Problem) {
	body, err := json.Marshal(p)
	if err != nil {
		body = []byte(`{"type":"` + ProblemTypeBase + `internal","title":"Internal Server Error","status":500,"detail":"internal error","code":"internal"}`)
		p = &Problem{Status: http.StatusInternalServerError}
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_, _ = w.Write(append(body, '\n'))
}

// WriteJSON sends v as application/json with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		WriteProblem(w, NewProblem(http.StatusInternalServerError, "internal", "internal error"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// Unavailable returns the 503 problem for a dependency that cannot be reached
// right now, and sets Retry-After (seconds) on w: a client should retry
// later rather than treat the request as failed for good.
func Unavailable(w http.ResponseWriter, code, detail string, retryAfterSeconds int) *Problem {
	w.Header().Set("Retry-After", strconv.Itoa(max(retryAfterSeconds, 1)))
	return NewProblem(http.StatusServiceUnavailable, code, detail)
}
