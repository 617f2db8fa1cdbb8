package identity

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Hydra is a client of the Ory Hydra v2 admin endpoints a login and consent
// app calls: read a login or consent request, accept it, or reject it. The
// admin API is never exposed publicly; only this service reaches it.
type Hydra struct {
	base string
	hc   *http.Client
}

// NewHydra returns a client of the admin API at adminURL
// ("http://127.0.0.1:4445"). hc bounds and guards the calls; in run it is
// the resilience-wrapped client of the "hydra" downstream.
func NewHydra(adminURL string, hc *http.Client) *Hydra {
	return &Hydra{base: strings.TrimSuffix(adminURL, "/"), hc: hc}
}

// HydraClient is the OAuth 2.0 client an authorization is for, as Hydra
// describes it in login and consent requests.
type HydraClient struct {
	ID          string `json:"client_id"`
	Name        string `json:"client_name"`
	SkipConsent bool   `json:"skip_consent"`
}

// LoginRequest is Hydra's login request: the authorization a client started
// and that waits for this app to say who the customer is.
type LoginRequest struct {
	Challenge string `json:"challenge"`
	// Skip means Hydra already knows the subject (a remembered session):
	// the login must be accepted with Subject without asking again.
	Skip              bool        `json:"skip"`
	Subject           string      `json:"subject"`
	Client            HydraClient `json:"client"`
	RequestedScope    []string    `json:"requested_scope"`
	RequestedAudience []string    `json:"requested_access_token_audience"`
}

// ConsentRequest is Hydra's consent request: the scopes and audience a
// client asks the signed-in customer to grant.
type ConsentRequest struct {
	Challenge string `json:"challenge"`
	// Skip means the customer already granted these scopes and Hydra
	// remembered it.
	Skip              bool        `json:"skip"`
	Subject           string      `json:"subject"`
	Client            HydraClient `json:"client"`
	RequestedScope    []string    `json:"requested_scope"`
	RequestedAudience []string    `json:"requested_access_token_audience"`
}

// redirect is Hydra's answer to an accept or reject, and to a challenge
// that was already handled (410).
type redirect struct {
	RedirectTo string `json:"redirect_to"`
}

// LoginRequest fetches the login request of challenge.
func (h *Hydra) LoginRequest(ctx context.Context, challenge string) (LoginRequest, error) {
	var out LoginRequest
	err := h.do(ctx, http.MethodGet, "/admin/oauth2/auth/requests/login", "login_challenge", challenge, nil, &out)
	return out, err
}

// AcceptLogin tells Hydra that subject signed in for challenge and returns
// where to send the browser next. The session is not remembered: every
// authorization asks for the password again, which keeps the flow
// stateless and predictable for scripts.
func (h *Hydra) AcceptLogin(ctx context.Context, challenge, subject string) (string, error) {
	body := struct {
		Subject  string `json:"subject"`
		Remember bool   `json:"remember"`
	}{subject, false}
	var out redirect
	err := h.do(ctx, http.MethodPut, "/admin/oauth2/auth/requests/login/accept", "login_challenge", challenge, body, &out)
	return out.RedirectTo, err
}

// ConsentRequest fetches the consent request of challenge.
func (h *Hydra) ConsentRequest(ctx context.Context, challenge string) (ConsentRequest, error) {
	var out ConsentRequest
	err := h.do(ctx, http.MethodGet, "/admin/oauth2/auth/requests/consent", "consent_challenge", challenge, nil, &out)
	return out, err
}

// AcceptConsent grants scope and audience for challenge and returns where
// to send the browser next.
func (h *Hydra) AcceptConsent(ctx context.Context, challenge string, scope, audience []string) (string, error) {
	body := struct {
		GrantScope    []string `json:"grant_scope"`
		GrantAudience []string `json:"grant_access_token_audience"`
		Remember      bool     `json:"remember"`
	}{nonNil(scope), nonNil(audience), false}
	var out redirect
	err := h.do(ctx, http.MethodPut, "/admin/oauth2/auth/requests/consent/accept", "consent_challenge", challenge, body, &out)
	return out.RedirectTo, err
}

// RejectConsent denies challenge (the customer said no) and returns where
// to send the browser: back to the client with error=access_denied.
func (h *Hydra) RejectConsent(ctx context.Context, challenge string) (string, error) {
	body := struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}{"access_denied", "The customer denied the request."}
	var out redirect
	err := h.do(ctx, http.MethodPut, "/admin/oauth2/auth/requests/consent/reject", "consent_challenge", challenge, body, &out)
	return out.RedirectTo, err
}

// Ready reports whether Hydra's admin API answers its readiness probe.
func (h *Hydra) Ready(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.base+"/health/ready", nil)
	if err != nil {
		return err
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrHydraUnavailable, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: /health/ready answered %d", ErrHydraUnavailable, resp.StatusCode)
	}
	return nil
}

// maxHydraBody caps what is read of one admin answer; a login request is a
// few KiB.
const maxHydraBody = 1 << 20

// do sends one admin call with the challenge as query parameter param and
// decodes a 200 answer into out. A challenge Hydra does not know is
// ErrChallengeNotFound; one already handled is a *HandledError; a failure
// of Hydra itself (5xx, no answer, breaker open) wraps ErrHydraUnavailable.
func (h *Hydra) do(ctx context.Context, method, path, param, challenge string, in, out any) error {
	if challenge == "" {
		return ErrChallengeNotFound
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("hydra %s: %w", path, err)
		}
		body = bytes.NewReader(b)
	}
	u := h.base + path + "?" + url.Values{param: {challenge}}.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("hydra %s: %w", path, err)
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s %s: %w", ErrHydraUnavailable, method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxHydraBody))
	if err != nil {
		return fmt.Errorf("%w: %s %s: read answer: %w", ErrHydraUnavailable, method, path, err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("hydra %s %s: decode answer: %w", method, path, err)
		}
		return nil
	case resp.StatusCode == http.StatusGone:
		var r redirect
		if err := json.Unmarshal(raw, &r); err != nil || r.RedirectTo == "" {
			return ErrChallengeNotFound
		}
		return &HandledError{RedirectTo: r.RedirectTo}
	case resp.StatusCode == http.StatusNotFound, resp.StatusCode == http.StatusBadRequest:
		return ErrChallengeNotFound
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return fmt.Errorf("%w: %s %s answered %d: %s", ErrHydraUnavailable, method, path, resp.StatusCode, snippet(raw))
	default:
		return fmt.Errorf("hydra %s %s answered %d: %s", method, path, resp.StatusCode, snippet(raw))
	}
}

// nonNil makes a nil slice encode as [] rather than null.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// snippet is the start of an error body, for a log line.
func snippet(b []byte) string {
	const n = 300
	if len(b) > n {
		b = b[:n]
	}
	return string(bytes.TrimSpace(b))
}
