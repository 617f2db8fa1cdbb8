package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeNotification lists an order's invoice after invoiceAfter polls and
// its e-mail after emailAfter, for the token "Bearer t" only.
func fakeNotification(t *testing.T, invoiceAfter, emailAfter int32) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var polls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer t" || r.URL.Query().Get("order_id") != "ord_1" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		n := polls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/invoices":
			if n > invoiceAfter {
				io.WriteString(w, `{"invoices":[{"number":"INV-1","order_id":"ord_1"}]}`)
				return
			}
			// As notification does while the order has nothing yet.
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"code":"not_found"}`)
		case "/v1/emails":
			if n > emailAfter {
				io.WriteString(w, `{"emails":[{"to":"a@example.com","order_id":"ord_1"}]}`)
				return
			}
			io.WriteString(w, `{"emails":[]}`)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &polls
}

func fakeOrder(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodPost && r.URL.Path == "/v1/orders" {
			body, _ := io.ReadAll(r.Body)
			if strings.Contains(string(body), "declined") {
				w.WriteHeader(http.StatusPaymentRequired)
				io.WriteString(w, `{"code":"payment_declined","order_id":"ord_2"}`)
				return
			}
			w.WriteHeader(http.StatusCreated)
			if strings.Contains(string(body), "no-email") {
				io.WriteString(w, `{"id":"ord_1","status":"confirmed"}`)
				return
			}
			io.WriteString(w, `{"id":"ord_1","email":"a@example.com","status":"confirmed"}`)
			return
		}
		io.WriteString(w, `{"id":"ord_1"}`)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, base, body string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/orders", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer t")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestHandler_WaitsForInvoiceAndEmail(t *testing.T) {
	notif, polls := fakeNotification(t, 2, 4)
	order := fakeOrder(t)
	o, _ := url.Parse(order.URL)
	n, _ := url.Parse(notif.URL)
	proxy := httptest.NewServer(newHandler(o, n, 5*time.Second, io.Discard))
	defer proxy.Close()

	resp, body := post(t, proxy.URL, `{"items":[]}`)
	if resp.StatusCode != http.StatusCreated || body != `{"id":"ord_1","email":"a@example.com","status":"confirmed"}` {
		t.Errorf("POST /v1/orders = %d %s; want order's 201 and body unchanged", resp.StatusCode, body)
	}
	// Invoices: 2 empty polls, then found (3); e-mails: poll 4 empty, 5 found.
	if got := polls.Load(); got != 5 {
		t.Errorf("notification polled %d times; want 5 (answered only once both exist)", got)
	}

	polls.Store(0)
	resp, _ = post(t, proxy.URL, `{"note":"no-email"}`)
	// Invoices: 2 empty polls, then found; no address, so no e-mail to wait for.
	if resp.StatusCode != http.StatusCreated || polls.Load() != 3 {
		t.Errorf("an order without an e-mail address = %d after %d polls; want 201 after 3 (its invoice only)", resp.StatusCode, polls.Load())
	}

	polls.Store(0)
	resp, _ = post(t, proxy.URL, `{"payment_method":"declined"}`)
	if resp.StatusCode != http.StatusPaymentRequired || polls.Load() != 0 {
		t.Errorf("a 402 = %d after %d polls; want it passed on at once", resp.StatusCode, polls.Load())
	}
	r2, err := http.Get(proxy.URL + "/v1/orders/ord_1")
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusOK || polls.Load() != 0 {
		t.Errorf("GET = %d after %d polls; want it proxied as it is", r2.StatusCode, polls.Load())
	}
}

func TestHandler_TimeoutIs504(t *testing.T) {
	notif, _ := fakeNotification(t, 1<<30, 1<<30) // never done
	o, _ := url.Parse(fakeOrder(t).URL)
	n, _ := url.Parse(notif.URL)
	proxy := httptest.NewServer(newHandler(o, n, 100*time.Millisecond, io.Discard))
	defer proxy.Close()
	resp, body := post(t, proxy.URL, `{}`)
	if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(body, "notification_timeout") ||
		resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("POST = %d %s %q; want a 504 problem with code notification_timeout", resp.StatusCode, body, resp.Header.Get("Content-Type"))
	}
}
