package payment

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/failsafe-go/failsafe-go/timeout"

	"github.com/orderflow/orderflow/pkg/resilience"
)

// ProviderClient calls the external payment provider over HTTP. Charges and
// refunds go through the provider's failsafe-go policies (guard): a timeout
// per attempt, so a slow provider costs a request at most the timeout; a
// circuit breaker, so a provider that is down is answered 503 at once
// instead of after a timeout; a bulkhead; and retries with backoff, which
// are safe for every call:
//   - a charge carries an Idempotency-Key header, so the provider returns
//     the first charge for a repeat instead of charging twice;
//   - the provider treats a repeated refund as a no-op;
//   - the look-up of a charge by key is a GET.
//
// A look-up never counts towards the breaker (resilience.Uncounted): the
// provider answers it from its ledger, fast while the card network makes
// every charge time out, and the look-ups that settle the timed-out charges
// (the reconciler's, and each compensation's list of an order's payments,
// asked again until the charge is settled) would otherwise outnumber the
// charges in the breaker's window and close it as half-open probes. It is
// still rejected at once while the breaker is open.
//
// Admin calls bypass the guard: an operator must be able to heal the
// provider while its breaker is open, and a 401 says nothing about its
// health. Every call carries the merchant's secret API key, as a real
// provider's API wants.
type ProviderClient struct {
	base   string
	apiKey string
	hc     *http.Client // through the guard
	admin  *http.Client // plain, with its own timeout
}

// NewProviderClient returns a client for the provider at baseURL
// ("http://127.0.0.1:8090") whose charges, refunds and look-ups go through
// guard, built once in run and shared.
func NewProviderClient(baseURL, apiKey string, guard *resilience.Downstream) *ProviderClient {
	return &ProviderClient{
		base:   strings.TrimRight(baseURL, "/"),
		apiKey: apiKey,
		hc:     guard.Client(),
		admin:  &http.Client{Timeout: guard.Policy().Timeout, Transport: resilience.NewTransport()},
	}
}

// ChargeRequest is what a capture sends to the provider; IdempotencyKey,
// sent as the provider's Idempotency-Key header, makes a retried capture
// return the first charge instead of a second one.
type ChargeRequest struct {
	AmountCents    int64  `json:"amount_cents"`
	Currency       string `json:"currency"`
	Method         string `json:"method"`
	IdempotencyKey string `json:"-"`
}

// ProviderCharge is a charge as the provider reports it.
type ProviderCharge struct {
	ID          string `json:"id"`
	Status      string `json:"status"`
	AmountCents int64  `json:"amount_cents"`
	Currency    string `json:"currency"`
}

// ProviderReply is the provider's raw answer to an admin call, passed on to
// the operator unchanged.
type ProviderReply struct {
	Status int
	Body   []byte
}

const maxReplyBytes = 1 << 20

func (c *ProviderClient) do(ctx context.Context, hc *http.Client, method, path string, header http.Header, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, fmt.Errorf("build provider request: %w", err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, classify(ctx, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes))
	if err != nil {
		return 0, nil, classify(ctx, err)
	}
	return resp.StatusCode, b, nil
}

// classify maps a transport failure to ErrProviderTimeout or
// ErrProviderUnavailable, keeping the cause for the log. A call the breaker
// or the bulkhead rejected is ErrProviderUnavailable and keeps its
// *resilience.RejectedError, whose RetryAfter says when to come back.
func classify(ctx context.Context, err error) error {
	var ne net.Error
	if errors.Is(err, timeout.ErrExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("%w: %w", ErrProviderTimeout, err)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", ErrProviderUnavailable, ctx.Err())
	}
	return fmt.Errorf("%w: %w", ErrProviderUnavailable, err)
}

// Charge captures a payment and returns the provider's charge id. An error
// wraps ErrNotCharged when the provider certainly holds no charge: no
// attempt wrote its request to the provider (the breaker or the bulkhead
// rejected it, the connection was refused), or the provider refused it with
// a 4xx. Any other failure (a timeout, a 5xx, a connection lost after the
// request went out) leaves the outcome unknown.
func (c *ProviderClient) Charge(ctx context.Context, req ChargeRequest) (string, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return "", fmt.Errorf("%w: encode charge: %w", ErrNotCharged, err)
	}
	var sent atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteHeaders: func() { sent.Store(true) }})
	h := http.Header{"Idempotency-Key": {req.IdempotencyKey}}
	// Retried: the Idempotency-Key makes a repeat return the first charge.
	status, reply, err := c.do(resilience.Idempotent(ctx), c.hc, http.MethodPost, "/v1/charges", h, body)
	if err != nil {
		if !sent.Load() {
			return "", fmt.Errorf("%w: %w", ErrNotCharged, err)
		}
		return "", err
	}
	switch {
	case status == http.StatusOK || status == http.StatusCreated:
		var ch ProviderCharge
		if err := json.Unmarshal(reply, &ch); err != nil || ch.ID == "" {
			return "", fmt.Errorf("%w: bad charge reply", ErrProviderUnavailable)
		}
		return ch.ID, nil
	case status == http.StatusPaymentRequired:
		var p struct {
			Code string `json:"code"`
		}
		_ = json.Unmarshal(reply, &p)
		if p.Code == "" {
			p.Code = "card_declined"
		}
		return "", &DeclinedError{DeclineCode: p.Code}
	case status >= 500 || status == http.StatusTooManyRequests:
		return "", fmt.Errorf("%w: charge answered %d", ErrProviderUnavailable, status)
	default:
		return "", fmt.Errorf("%w: provider refused charge: %d %s", ErrNotCharged, status, bytes.TrimSpace(reply))
	}
}

// ChargeByKey asks the provider for the charge made with an idempotency
// key (GET /v1/charges?idempotency_key=…); found is false when it holds
// none, which is final only once no request with the key can still reach it.
func (c *ProviderClient) ChargeByKey(ctx context.Context, key string) (ch ProviderCharge, found bool, err error) {
	status, reply, err := c.do(resilience.Uncounted(ctx), c.hc, http.MethodGet, "/v1/charges?idempotency_key="+url.QueryEscape(key), nil, nil)
	if err != nil {
		return ProviderCharge{}, false, err
	}
	switch {
	case status == http.StatusOK:
		var list struct {
			Data []ProviderCharge `json:"data"`
		}
		if err := json.Unmarshal(reply, &list); err != nil || list.Data == nil {
			return ProviderCharge{}, false, fmt.Errorf("%w: bad charge list reply", ErrProviderUnavailable)
		}
		if len(list.Data) == 0 {
			return ProviderCharge{}, false, nil
		}
		return list.Data[0], true, nil
	case status >= 500 || status == http.StatusTooManyRequests:
		return ProviderCharge{}, false, fmt.Errorf("%w: charge look-up answered %d", ErrProviderUnavailable, status)
	default:
		return ProviderCharge{}, false, fmt.Errorf("provider refused charge look-up: %d %s", status, bytes.TrimSpace(reply))
	}
}

// Refund refunds a charge; the provider treats a repeat as a no-op.
func (c *ProviderClient) Refund(ctx context.Context, chargeID string) error {
	// Retried: the provider treats a repeated refund as a no-op.
	status, reply, err := c.do(resilience.Idempotent(ctx), c.hc, http.MethodPost, "/v1/charges/"+url.PathEscape(chargeID)+"/refund", nil, nil)
	if err != nil {
		return err
	}
	switch {
	case status == http.StatusOK:
		return nil
	case status == http.StatusNotFound:
		return fmt.Errorf("%w: %s", ErrChargeNotFound, chargeID)
	case status >= 500:
		return fmt.Errorf("%w: refund answered %d", ErrProviderUnavailable, status)
	default:
		return fmt.Errorf("provider refused refund: %d %s", status, bytes.TrimSpace(reply))
	}
}

// providerSettingsBody is a change of the provider's settings as its
// PUT /admin/config takes it: a field left out keeps its value.
type providerSettingsBody struct {
	LatencyMS *int     `json:"latency_ms,omitempty"`
	ErrorRate *float64 `json:"error_rate,omitempty"`
	Outage    *bool    `json:"outage,omitempty"`
}

// Admin reads (change nil: GET /admin/config) or changes (PUT) the
// provider's settings and returns the provider's answer. Only transport
// failures and 5xx answers are errors.
func (c *ProviderClient) Admin(ctx context.Context, change *ProviderSettings) (ProviderReply, error) {
	method, body := http.MethodGet, []byte(nil)
	if change != nil {
		b, err := json.Marshal(providerSettingsBody(*change))
		if err != nil {
			return ProviderReply{}, fmt.Errorf("encode provider settings: %w", err)
		}
		method, body = http.MethodPut, b
	}
	status, reply, err := c.do(ctx, c.admin, method, "/admin/config", nil, body)
	if err != nil {
		return ProviderReply{}, err
	}
	if status >= 500 {
		return ProviderReply{}, fmt.Errorf("%w: admin config answered %d", ErrProviderUnavailable, status)
	}
	return ProviderReply{Status: status, Body: reply}, nil
}
