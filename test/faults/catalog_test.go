package faults

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"

	"github.com/orderflow/orderflow/test/invariants"
)

// The faults of the suite, by number. hold is how long each lasts. A fault
// that the network makes (a cut, latency, a partition) is a Toxiproxy
// toxic or a disabled proxy; a crash is a SIGKILL of the process.

func providerOutage(hold time.Duration) fault {
	return fault{name: "1 provider outage " + hold.String(), hold: hold,
		inject: func(s *stack) { s.setProvider(0, true) },
		heal:   func(s *stack) { s.setProvider(0, false) }}
}

func providerLatency(hold time.Duration) fault {
	return fault{name: "2 provider latency 5s for " + hold.String(), hold: hold,
		inject: func(s *stack) { s.setProvider(5000, false) },
		heal:   func(s *stack) { s.setProvider(0, false) }}
}

func killInventory(down time.Duration) fault {
	return fault{name: "3 SIGKILL inventory, restart after " + down.String(), hold: down,
		inject: func(s *stack) { s.signal("inventory", syscall.SIGKILL) },
		heal:   func(s *stack) { s.start("inventory") }}
}

func cutRedis(hold time.Duration) fault {
	return fault{name: "4 Redis cut " + hold.String(), hold: hold,
		inject: func(s *stack) { s.setEnabled(false, redisProxy) },
		heal:   func(s *stack) { s.setEnabled(true, redisProxy) }}
}

// cutSQS takes the SQS endpoint away as a killed process looks to its
// clients: open connections closed, new ones refused. The suite does not
// kill the endpoint itself: the machine's fauxqs is shared with other runs,
// and it keeps its queues in memory only, so a restart would lose messages
// a real SQS keeps through an outage.
func cutSQS(hold time.Duration) fault {
	var waiting int
	return fault{name: "5 SQS endpoint down " + hold.String(), hold: hold,
		inject: func(s *stack) { s.setEnabled(false, sqsProxy) },
		heal: func(s *stack) {
			waiting = s.unsent()
			s.setEnabled(true, sqsProxy)
		},
		verify: func(s *stack) (string, []string) {
			seen := fmt.Sprintf("%d outbox rows waiting at the heal, all published after", waiting)
			if waiting == 0 {
				return seen, []string{"no outbox row waited for SQS: the relay published through the outage"}
			}
			return seen, nil
		}}
}

func killNotification(down time.Duration) fault {
	return fault{name: "6 SIGKILL notification mid-message, restart after " + down.String(), hold: down,
		inject: func(s *stack) { s.signal("notification", syscall.SIGKILL) },
		heal:   func(s *stack) { s.start("notification") }}
}

// cutPostgres is a restart of the Postgres server as its clients see it:
// every service's connections closed, new ones refused. The machine's
// server itself is never restarted.
func cutPostgres(hold time.Duration) fault {
	return fault{name: "7 Postgres restart (every proxy disabled " + hold.String() + ")", hold: hold,
		inject: func(s *stack) { s.setEnabled(false, pgProxies()...) },
		heal:   func(s *stack) { s.setEnabled(true, pgProxies()...) }}
}

// cutPaymentDB resets payment's database connections while captures are
// at the provider: with the provider answering after 300 ms, several
// captures have written their intent and charged the card when their
// connection dies, so recording the outcome fails. Their intents stay
// unknown until the reconciler asks the provider by key.
func cutPaymentDB(hold time.Duration) fault {
	var inFlight, unknown, refunds int
	return fault{name: "8 payment's Postgres connections reset mid-capture for " + hold.String(), hold: hold,
		inject: func(s *stack) {
			refunds = s.refunds()
			s.setProvider(300, false)
			time.Sleep(time.Second)
			inFlight = s.pendingIntents()
			s.addToxic("reset_peer", "", toxiproxy.Attributes{"timeout": 0}, pgProxy("payment"))
		},
		heal: func(s *stack) {
			s.removeToxics(pgProxy("payment"))
			unknown = s.pendingIntents()
			s.setProvider(0, false)
		},
		verify: func(s *stack) (string, []string) {
			seen := fmt.Sprintf("%d captures at the provider when the connections were reset; %d intents unknown at the heal, "+
				"settled by the reconciler; %d charges refunded", inFlight, unknown, s.refunds()-refunds)
			if inFlight == 0 {
				return seen, []string{"no capture was at the provider when the connections were reset: the fault missed its moment"}
			}
			return seen, nil
		}}
}

// killProvider SIGKILLs the simulated provider while orders flow: with
// the provider answering after 300 ms, several charges are in flight and
// get no answer, so their intents are unknown. Its ledger is in its own
// database, so the restarted provider (back to no latency) answers the
// reconciler's look-ups by key.
func killProvider(down time.Duration) fault {
	var inFlight, unknown, refunds int
	return fault{name: "9 SIGKILL provider mid-charge, restart after " + down.String(), hold: down,
		inject: func(s *stack) {
			refunds = s.refunds()
			s.setProvider(300, false)
			time.Sleep(time.Second)
			inFlight = s.pendingIntents()
			s.signal("provider", syscall.SIGKILL)
		},
		heal: func(s *stack) {
			unknown = s.pendingIntents()
			s.start("provider")
		},
		verify: func(s *stack) (string, []string) {
			seen := fmt.Sprintf("%d charges in flight at the kill; %d intents unknown at the restart, settled by the reconciler; %d charges refunded",
				inFlight, unknown, s.refunds()-refunds)
			if inFlight == 0 {
				return seen, []string{"no charge was in flight when the provider was killed: the fault missed its moment"}
			}
			return seen, nil
		}}
}

// slowPostgres adds 500 ms to every answer of the Postgres server, for
// every service.
func slowPostgres(hold time.Duration) fault {
	return fault{name: "10 Postgres latency 500ms for " + hold.String(), hold: hold,
		inject: func(s *stack) {
			s.addToxic("latency", "downstream", toxiproxy.Attributes{"latency": 500}, pgProxies()...)
		},
		heal: func(s *stack) { s.removeToxics(pgProxies()...) }}
}

// partitionOrderPayment drops everything between order and payment
// without closing a connection: a request sent is never answered. It cuts
// in mid-request, as a real partition does: payment's answers are dropped
// first and order's requests a second later, so the captures sent in that
// second succeed at payment while order times out and fails their orders,
// which must then be refunded once the partition heals.
func partitionOrderPayment(hold time.Duration) fault {
	var refunds int
	return fault{name: "11 partition order ⇹ payment " + hold.String(), hold: hold,
		inject: func(s *stack) {
			refunds = s.refunds()
			s.addToxic("timeout", "downstream", toxiproxy.Attributes{"timeout": 0}, paymentProxy)
			time.Sleep(time.Second)
			s.addToxic("timeout", "upstream", toxiproxy.Attributes{"timeout": 0}, paymentProxy)
		},
		heal: func(s *stack) { s.removeToxics(paymentProxy) },
		verify: func(s *stack) (string, []string) {
			n := s.refunds() - refunds
			seen := fmt.Sprintf("%d captures whose answer the partition dropped, refunded after it", n)
			if n == 0 {
				return seen, []string{"no capture's answer was dropped: the partition missed the requests in flight"}
			}
			return seen, nil
		}}
}

// killRelay SIGKILLs order while its outbox relay publishes: SQS answers a
// second late, so a backlog builds and the relay spends its time inside a
// batch that SQS has (partly) accepted but that is not marked sent. The
// restarted relay publishes the batch again; the consumers' deduplication
// keeps one invoice and one e-mail per order.
func killRelay(down time.Duration) fault {
	var unsent int
	return fault{name: "12 SIGKILL order mid-relay-batch, restart after " + down.String(), hold: down,
		inject: func(s *stack) {
			s.addToxic("latency", "downstream", toxiproxy.Attributes{"latency": 1000}, sqsProxy)
			deadline := time.Now().Add(30 * time.Second)
			for unsent = s.unsent(); unsent < 20 && time.Now().Before(deadline); unsent = s.unsent() {
				time.Sleep(100 * time.Millisecond)
			}
			s.signal("order", syscall.SIGKILL)
			s.removeToxics(sqsProxy)
		},
		heal: func(s *stack) { s.start("order") },
		verify: func(s *stack) (string, []string) {
			seen := fmt.Sprintf("killed with %d outbox rows unsent and a batch at SQS", unsent)
			if unsent < 20 {
				return seen, []string{fmt.Sprintf("the relay's backlog reached %d rows, not 20, in 30s: no batch was surely in flight", unsent)}
			}
			return seen, nil
		}}
}

// refundFailures is how many attempts of the recovery loop fail before a
// compensation is parked: ORDER_COMPENSATION_MAX_ATTEMPTS while fault 13
// runs.
const refundFailures = 20

// parkRefund makes the provider refuse the refund of one cancelled order,
// every time (a trigger in the provider's ledger raises on that charge's
// refund): the recovery loop's attempts fail until the compensation is
// parked, counted in orderflow_compensation_needs_attention (the
// CompensationNeedsAttention alert's expression) and listed by GET
// /admin/compensations. The heal lets refunds through again and an
// operator retries it with POST /admin/compensations/{order_id}/retry.
// For the fault, order is restarted to park after refundFailures attempts
// retried at most 100 ms … 500 ms apart, so that it parks within a minute;
// the teardown restarts it with the suite's settings.
func parkRefund() fault {
	var (
		saved         []string
		orderID       string
		parkedIn      time.Duration
		settledIn     time.Duration
		listed        compensation
		gaugeParked   float64
		problems      []string
		cancelledAt   time.Time
		retryAccepted bool
	)
	return fault{name: fmt.Sprintf("13 refund refused %d times, then retried by an operator", refundFailures),
		setup: func(s *stack) {
			saved = s.env["order"]
			s.restart("order", append(slices.Clone(saved), "ORDER_COMPENSATION_MAX_ATTEMPTS="+strconv.Itoa(refundFailures),
				"ORDER_COMPENSATION_BACKOFF=100ms", "ORDER_COMPENSATION_MAX_BACKOFF=500ms"))
		},
		teardown: func(s *stack) { s.restart("order", saved) },
		inject: func(s *stack) {
			orderID = s.placeOrder(customerID(0))
			var charge string
			s.db.Value("payment", `SELECT provider_charge_id FROM payments WHERE order_id = $1 AND status = 'captured'`, &charge, orderID)
			s.db.Exec("provider", `CREATE TABLE faults_refused (charge_id text PRIMARY KEY)`)
			s.db.Exec("provider", `INSERT INTO faults_refused VALUES ($1)`, charge)
			s.db.Exec("provider", `CREATE FUNCTION faults_refuse_refund() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN
					IF EXISTS (SELECT 1 FROM faults_refused WHERE charge_id = NEW.charge_id) THEN
						RAISE EXCEPTION 'fault suite: refund of charge % refused', NEW.charge_id;
					END IF;
					RETURN NEW;
				END $$`)
			s.db.Exec("provider", `CREATE TRIGGER faults_refuse_refund BEFORE INSERT ON refunds
				FOR EACH ROW EXECUTE FUNCTION faults_refuse_refund()`)
			token := s.tokens[customerID(0)]
			if status, body := s.call(http.MethodPost, s.url("order", "/v1/orders/"+orderID+"/cancel"), token, ""); status != http.StatusOK {
				s.t.Fatalf("cancel %s = %d %s; want 200 (the refund is retried in the background)", orderID, status, body)
			}
			cancelledAt = time.Now()
			deadline := cancelledAt.Add(3 * time.Minute)
			for time.Now().Before(deadline) {
				if c, ok := s.parked(orderID); ok {
					listed, parkedIn = c, time.Since(cancelledAt)
					break
				}
				time.Sleep(250 * time.Millisecond)
			}
			if parkedIn == 0 {
				problems = append(problems, fmt.Sprintf("order %s: compensation not listed by GET /admin/compensations within 3m of the cancel", orderID))
				return
			}
			gaugeParked = s.orderGauge("orderflow_compensation_needs_attention")
			if gaugeParked < 1 {
				problems = append(problems, fmt.Sprintf("orderflow_compensation_needs_attention = %v while order %s is parked; want ≥ 1", gaugeParked, orderID))
			}
			// The parked refund is money held for a cancelled order: the
			// money check must name its charge now (other differences come
			// and go with the orders in flight).
			var money invariants.Violations
			captured, refunded := s.providerTotals()
			s.db.CheckMoney(&money, captured, refunded)
			if !slices.ContainsFunc(money, func(v string) bool { return strings.Contains(v, charge) }) {
				problems = append(problems, fmt.Sprintf("while the refund of charge %s is parked, the money check does not name it: %q", charge, money))
			}
			if listed.Attempts != refundFailures {
				problems = append(problems, fmt.Sprintf("order %s parked after %d attempts; want %d", orderID, listed.Attempts, refundFailures))
			}
		},
		heal: func(s *stack) {
			s.db.Exec("provider", `DROP TRIGGER faults_refuse_refund ON refunds`)
			s.db.Exec("provider", `DROP FUNCTION faults_refuse_refund()`)
			s.db.Exec("provider", `DROP TABLE faults_refused`)
			if parkedIn == 0 {
				return // the recovery loop settles it on its own, or settle reports it
			}
			retried := time.Now()
			status, body := s.call(http.MethodPost, s.url("order", "/admin/compensations/"+orderID+"/retry"), s.adminToken(), "")
			if status != http.StatusAccepted {
				problems = append(problems, fmt.Sprintf("POST /admin/compensations/%s/retry = %d %s; want 202", orderID, status, body))
				return
			}
			retryAccepted = true
			deadline := retried.Add(time.Minute)
			for time.Now().Before(deadline) {
				if s.db.Count("order", `SELECT count(*) FROM orders WHERE id = $1 AND compensate_after IS NULL AND needs_attention_at IS NULL`, orderID) == 1 {
					settledIn = time.Since(retried)
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
		},
		verify: func(s *stack) (string, []string) {
			if parkedIn == 0 {
				return "never parked", problems
			}
			broken := problems
			var status string
			s.db.Value("payment", `SELECT status FROM payments WHERE order_id = $1`, &status, orderID)
			if status != "refunded" {
				broken = append(broken, fmt.Sprintf("order %s: payment %s after the operator's retry; want refunded", orderID, status))
			}
			if g := s.orderGauge("orderflow_compensation_needs_attention"); g != 0 {
				broken = append(broken, fmt.Sprintf("orderflow_compensation_needs_attention = %v after the retry settled; want 0", g))
			}
			seen := fmt.Sprintf("parked %s after the cancel, after %d failed attempts (listed; needs_attention gauge %v; last error %q); ",
				ms(parkedIn), listed.Attempts, gaugeParked, truncate(listed.LastError, 80))
			if retryAccepted && settledIn > 0 {
				seen += fmt.Sprintf("refunded %s after the admin retry (202)", ms(settledIn))
			} else {
				broken = append(broken, fmt.Sprintf("order %s: compensation not settled within 1m of the admin retry", orderID))
			}
			return seen, broken
		}}
}

// compensation is one entry of GET /admin/compensations.
type compensation struct {
	OrderID   string `json:"order_id"`
	Attempts  int    `json:"attempts"`
	LastError string `json:"last_error"`
}

// parked reports whether GET /admin/compensations lists orderID, and its
// entry.
func (s *stack) parked(orderID string) (compensation, bool) {
	s.t.Helper()
	status, body := s.call(http.MethodGet, s.url("order", "/admin/compensations?limit=100"), s.adminToken(), "")
	if status != http.StatusOK {
		s.t.Fatalf("GET /admin/compensations = %d %s", status, body)
	}
	var page struct {
		Compensations []compensation `json:"compensations"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		s.t.Fatalf("GET /admin/compensations: %v: %s", err, body)
	}
	for _, c := range page.Compensations {
		if c.OrderID == orderID {
			return c, true
		}
	}
	return compensation{}, false
}

// orderGauge reads a gauge without labels of its own from order's
// /metrics: the sum of its samples.
func (s *stack) orderGauge(name string) float64 {
	s.t.Helper()
	resp, err := http.Get(s.url("order", "/metrics"))
	if err != nil {
		s.t.Fatalf("GET order /metrics: %v", err)
	}
	defer resp.Body.Close()
	var sum float64
	found := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			s.t.Fatalf("order /metrics: %q: %v", line, err)
		}
		sum, found = sum+v, true
	}
	if !found {
		s.t.Fatalf("order /metrics has no %s", name)
	}
	return sum
}

// placeOrder places one order as customer and returns its id once it is
// confirmed, trying again (with a new key) while the answer is not 201.
func (s *stack) placeOrder(customer string) string {
	s.t.Helper()
	body, _ := json.Marshal(map[string]any{"items": []map[string]any{{"sku": skus[0], "quantity": 1}},
		"payment_method": "pm_card_ok"})
	for attempt := 1; ; attempt++ {
		req, _ := http.NewRequest(http.MethodPost, s.url("order", "/v1/orders"), bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+s.tokens[customer])
		req.Header.Set("Idempotency-Key", fmt.Sprintf("faults-park-%d-%d", time.Now().UnixNano(), attempt))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			s.t.Fatalf("POST /v1/orders: %v", err)
		}
		var o struct {
			ID string `json:"id"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&o)
		resp.Body.Close()
		if resp.StatusCode == http.StatusCreated {
			return o.ID
		}
		if attempt == 10 {
			s.t.Fatalf("POST /v1/orders = %d ten times; want 201", resp.StatusCode)
		}
		time.Sleep(time.Second)
	}
}

// refunds is how many refunds the provider has made.
func (s *stack) refunds() int {
	return s.db.Count("provider", `SELECT count(*) FROM refunds`)
}

// pendingIntents is how many of payment's intents have an unknown outcome.
func (s *stack) pendingIntents() int {
	return s.db.Count("payment", `SELECT count(*) FROM payment_intents WHERE state = 'pending'`)
}

// unsent is how many outbox rows wait for the relay.
func (s *stack) unsent() int {
	return s.db.Count("order", `SELECT count(*) FROM outbox WHERE sent_at IS NULL`)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
