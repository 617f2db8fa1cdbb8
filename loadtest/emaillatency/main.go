// Command emaillatency measures how long an order's e-mail takes to leave the
// request path: it places N orders against a running stack (make dev), then
// reads each order's e-mail from the notification service and reports the
// time from the order's confirmation (its updated_at, the moment the 201 was
// committed) to the e-mail's sent_at: median, p95 and max.
//
// The orders are placed, and their e-mails read, as one customer: -token
// (or ORDERFLOW_TOKEN) is that customer's access token, as make token
// prints it. It lives 15 minutes, and one customer's orders count against
// one rate-limit allowance (make dev: 50/s).
//
//	ORDERFLOW_TOKEN=$(make -s token | tail -1) go run ./loadtest/emaillatency -n 200 -rate 10
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "emaillatency:", err)
		os.Exit(1)
	}
}

type order struct {
	ID        string    `json:"id"`
	Status    string    `json:"status"`
	UpdatedAt time.Time `json:"updated_at"`
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	n := fs.Int("n", 200, "orders to place")
	conc := fs.Int("c", 4, "concurrent clients")
	orderURL := fs.String("order", "http://127.0.0.1:8080", "order service")
	notifURL := fs.String("notification", "http://127.0.0.1:8083", "notification service")
	wait := fs.Duration("wait", 60*time.Second, "how long to wait for the last e-mail")
	rate := fs.Float64("rate", 10, "orders per second in total (0: as fast as the clients go)")
	token := fs.String("token", getenv("ORDERFLOW_TOKEN"), "the customer's access token (env ORDERFLOW_TOKEN; make token prints one)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *token == "" {
		return errors.New("-token or ORDERFLOW_TOKEN is required: a customer's access token (make token prints the demo customer's)")
	}
	// Every request carries the token (x/oauth2 sets the header).
	client := oauth2.NewClient(ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: *token}))
	client.Timeout = 20 * time.Second
	run := time.Now().UnixNano()

	var mu sync.Mutex
	var orders []order
	var errs []error
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				o, err := place(ctx, client, *orderURL, fmt.Sprintf("emaillatency-%d-%d", run, i), i)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					orders = append(orders, o)
				}
				mu.Unlock()
			}
		}()
	}
	var tick <-chan time.Time
	if *rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / *rate))
		defer t.Stop()
		tick = t.C
	}
	for i := range *n {
		if tick != nil {
			<-tick
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("%d of %d orders failed, first: %w", len(errs), *n, errs[0])
	}

	var lat []time.Duration
	deadline := time.Now().Add(*wait)
	for _, o := range orders {
		for {
			sent, err := emailSentAt(ctx, client, *notifURL, o.ID)
			if err != nil {
				return err
			}
			if !sent.IsZero() {
				lat = append(lat, sent.Sub(o.UpdatedAt))
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("no e-mail for order %s within %v", o.ID, *wait)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))] }
	fmt.Fprintf(stdout, "orders: %d  e-mails: %d\n", len(orders), len(lat))
	fmt.Fprintf(stdout, "order confirmed → e-mail sent: median %v  p95 %v  max %v\n",
		pct(0.5).Round(time.Millisecond), pct(0.95).Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	return nil
}

// place places an order as the token's customer (the body names none).
func place(ctx context.Context, c *http.Client, base, key string, i int) (order, error) {
	body, _ := json.Marshal(map[string]any{
		"email":          "latency@example.com",
		"items":          []map[string]any{{"sku": fmt.Sprintf("SKU-%05d", 1000+i%9000), "quantity": 1}},
		"payment_method": "pm_card_ok",
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/orders", bytes.NewReader(body))
	if err != nil {
		return order{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := c.Do(req)
	if err != nil {
		return order{}, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return order{}, fmt.Errorf("POST /v1/orders = %d %s", resp.StatusCode, raw)
	}
	var o order
	if err := json.Unmarshal(raw, &o); err != nil {
		return order{}, err
	}
	return o, nil
}

func emailSentAt(ctx context.Context, c *http.Client, base, orderID string) (time.Time, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/emails?order_id="+orderID, nil)
	if err != nil {
		return time.Time{}, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return time.Time{}, err
	}
	defer resp.Body.Close()
	var out struct {
		Emails []struct {
			SentAt time.Time `json:"sent_at"`
		} `json:"emails"`
	}
	// A customer who has no e-mail for the order yet gets a 404, as for
	// another customer's order: not sent yet.
	if resp.StatusCode == http.StatusNotFound {
		return time.Time{}, nil
	}
	if resp.StatusCode != http.StatusOK {
		return time.Time{}, fmt.Errorf("GET /v1/emails = %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return time.Time{}, errors.Join(errors.New("decode e-mails"), err)
	}
	if len(out.Emails) == 0 {
		return time.Time{}, nil
	}
	return out.Emails[0].SentAt, nil
}
