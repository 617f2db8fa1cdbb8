package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The kinds of work one order does, counted around a measurement: the
// floor of one order (floor.go) multiplies them by the bare cost of each.

// workCounts is what a stack did during a measurement window, and how
// many orders it completed in it.
type workCounts struct {
	Orders  int64   `json:"orders"`
	Seconds float64 `json:"seconds"`
	// ClientRequests is what the load generator sent (k6's http_reqs).
	ClientRequests int64 `json:"client_requests"`
	// Served is the HTTP requests each service answered, from its own
	// orderflow_http_requests_total (probes and /metrics left out).
	// "provider" exports no counter: it is payment's POST /v1/payments,
	// one provider call each.
	Served map[string]int64 `json:"http_served"`
	// SQS is the API calls by action, from loadtest/sqscount;
	// "<action>.entries" the entries of batch calls.
	SQS map[string]int64 `json:"sqs_calls"`
	// Emails and Invoices are notification's messages handled ok
	// (orderflow_messages_processed_total): one SMTP delivery per e-mail.
	Emails   int64 `json:"emails"`
	Invoices int64 `json:"invoices"`
	// SQLSource says where the SQL counts come from: "pg_stat_statements",
	// or "pg_stat_database" when the extension is not loaded (then
	// Statements and Commits are unknown, 0).
	SQLSource string `json:"sql_source"`
	// SQLNote says why, when the source is the fallback.
	SQLNote      string `json:"sql_note,omitempty"`
	Statements   int64  `json:"sql_statements"` // not BEGIN/COMMIT/SET…
	Commits      int64  `json:"sql_commits"`    // explicit COMMITs
	Transactions int64  `json:"sql_transactions"`
	RowsRead     int64  `json:"rows_read"`    // tup_fetched
	RowsWritten  int64  `json:"rows_written"` // inserted + updated + deleted
	// ByDatabase is the transactions (and statements, when counted) of
	// each of the stack's databases, by service.
	ByDatabase map[string][2]int64 `json:"sql_by_database,omitempty"`
}

// per is n per order.
func (c workCounts) per(n int64) float64 {
	if c.Orders <= 0 {
		return 0
	}
	return float64(n) / float64(c.Orders)
}

// externalHops are the requests the load generator's orders made of order;
// internalHops the calls between the services.
func (c workCounts) externalHops() int64 { return c.Served["order"] }

func (c workCounts) internalHops() int64 {
	var n int64
	for svc, v := range c.Served {
		if svc != "order" {
			n += v
		}
	}
	return n
}

func (c workCounts) sqsCalls() int64 {
	var n int64
	for k, v := range c.SQS {
		if !strings.HasSuffix(k, ".entries") {
			n += v
		}
	}
	return n
}

// counter is what one scrape of the counters saw.
type counterSnapshot struct {
	served          map[string]int64
	emails, invoice int64
	sqs             map[string]int64
	db              map[string]pgCounts // by service
}

// pgCounts are one database's counters.
type pgCounts struct {
	xacts, fetched, written int64
	statements, commits     int64
}

// counters reads the counters of stack s: its services' /metrics, the SQS
// counting proxy and the PostgreSQL statistics of its databases.
func (e *environment) counters(ctx context.Context, s running) (counterSnapshot, error) {
	snap := counterSnapshot{served: map[string]int64{}, sqs: map[string]int64{}}
	for svc, base := range map[string]string{"order": s.orderDirect, "inventory": s.inventory,
		"payment": s.payment, "notification": s.notification} {
		text, err := fetchText(ctx, base+"/metrics")
		if err != nil {
			return snap, fmt.Errorf("%s /metrics: %w", svc, err)
		}
		m := parseMetrics(text)
		snap.served[svc] = m.servedRequests()
		if svc == "payment" {
			snap.served["provider"] = m.sum("orderflow_http_requests_total", func(l map[string]string) bool {
				return l["route"] == "/v1/payments" && l["method"] == "POST"
			})
		}
		if svc == "notification" {
			snap.emails = m.processed("email")
			snap.invoice = m.processed("invoice")
		}
	}
	if e.sqsCounter != "" {
		b, err := fetchText(ctx, e.sqsCounter+"/_sqscount")
		if err != nil {
			return snap, fmt.Errorf("sqscount: %w", err)
		}
		if err := json.Unmarshal([]byte(b), &snap.sqs); err != nil {
			return snap, fmt.Errorf("sqscount: %w", err)
		}
	}
	db, err := e.pg.snapshot(ctx, s.databases)
	if err != nil {
		return snap, err
	}
	snap.db = db
	return snap, nil
}

// countWork runs measure between two snapshots of s's counters; the second
// is taken drain after measure returns, once the background work of the
// last orders (relay, workers, e-mail) and PostgreSQL's statistics have
// caught up. measure returns the orders it completed, the requests the
// load generator sent and its length.
func (e *environment) countWork(ctx context.Context, s running, drain time.Duration, measure func() (orders, requests int64, secs float64, err error)) (workCounts, error) {
	before, err := e.counters(ctx, s)
	if err != nil {
		return workCounts{}, err
	}
	orders, requests, secs, err := measure()
	if err != nil {
		return workCounts{}, err
	}
	select {
	case <-ctx.Done():
		return workCounts{}, ctx.Err()
	case <-time.After(drain):
	}
	after, err := e.counters(ctx, s)
	if err != nil {
		return workCounts{}, err
	}
	return diffCounts(before, after, orders, requests, secs, e.pg), nil
}

// diffCounts is what happened between two snapshots.
func diffCounts(before, after counterSnapshot, orders, requests int64, secs float64, src pgSource) workCounts {
	c := workCounts{Orders: orders, ClientRequests: requests, Seconds: secs, Served: map[string]int64{},
		SQS: map[string]int64{}, Emails: after.emails - before.emails, Invoices: after.invoice - before.invoice,
		SQLSource: src.name(), SQLNote: src.note, ByDatabase: map[string][2]int64{}}
	for k, v := range after.served {
		c.Served[k] = v - before.served[k]
	}
	for k, v := range after.sqs {
		if d := v - before.sqs[k]; d > 0 {
			c.SQS[k] = d
		}
	}
	for svc, a := range after.db {
		b := before.db[svc]
		d := pgCounts{xacts: a.xacts - b.xacts, fetched: a.fetched - b.fetched, written: a.written - b.written,
			statements: a.statements - b.statements, commits: a.commits - b.commits}
		c.Transactions += d.xacts
		c.RowsRead += d.fetched
		c.RowsWritten += d.written
		c.Statements += d.statements
		c.Commits += d.commits
		c.ByDatabase[svc] = [2]int64{d.xacts, d.statements}
	}
	return c
}

func fetchText(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s = %d", url, resp.StatusCode)
	}
	return string(b), nil
}

// series is one sample of the Prometheus text format.
type series struct {
	name   string
	labels map[string]string
	value  float64
}

// metrics are the samples of one scrape.
type metrics []series

// parseMetrics reads the Prometheus text exposition format: comments are
// skipped, and label values are unquoted (they may hold commas and
// escaped quotes).
func parseMetrics(text string) metrics {
	var out metrics
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		s := series{labels: map[string]string{}}
		rest := line
		if i := strings.IndexAny(line, "{ "); i >= 0 && line[i] == '{' {
			s.name = line[:i]
			rest = line[i+1:]
			for {
				rest = strings.TrimLeft(rest, ", ")
				if rest == "" || rest[0] == '}' {
					rest = strings.TrimPrefix(rest, "}")
					break
				}
				eq := strings.IndexByte(rest, '=')
				if eq < 0 || eq+1 >= len(rest) || rest[eq+1] != '"' {
					rest = ""
					break
				}
				key := rest[:eq]
				val, n, ok := unquoteLabel(rest[eq+1:])
				if !ok {
					rest = ""
					break
				}
				s.labels[key] = val
				rest = rest[eq+1+n:]
			}
		} else if i >= 0 {
			s.name, rest = line[:i], line[i:]
		} else {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		s.value = v
		out = append(out, s)
	}
	return out
}

// unquoteLabel reads a quoted label value at the start of s and returns
// it and how many bytes it took.
func unquoteLabel(s string) (string, int, bool) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 < len(s) {
				i++
				switch s[i] {
				case 'n':
					b.WriteByte('\n')
				default:
					b.WriteByte(s[i])
				}
			}
		case '"':
			return b.String(), i + 1, true
		default:
			b.WriteByte(s[i])
		}
	}
	return "", 0, false
}

// sum adds the samples of name whose labels match.
func (m metrics) sum(name string, match func(map[string]string) bool) int64 {
	var v float64
	for _, s := range m {
		if s.name == name && (match == nil || match(s.labels)) {
			v += s.value
		}
	}
	return int64(v)
}

// servedRequests are the requests a service answered, probes and scrapes
// left out: they are not an order's work.
func (m metrics) servedRequests() int64 {
	return m.sum("orderflow_http_requests_total", func(l map[string]string) bool {
		switch l["route"] {
		case "/metrics", "/healthz", "/readyz":
			return false
		}
		return true
	})
}

// processed are the messages notification's consumer of kind ("email",
// "invoice") handled ok.
func (m metrics) processed(kind string) int64 {
	return m.sum("orderflow_messages_processed_total", func(l map[string]string) bool {
		return l["outcome"] == "ok" && (strings.Contains(l["consumer"], kind) || strings.Contains(l["queue"], kind))
	})
}

// pgSource reads the PostgreSQL statistics: pg_stat_statements when the
// server loads it (shared_preload_libraries), else pg_stat_database alone.
type pgSource struct {
	server string
	// statsDB is the scratch database the extension was created in, to
	// read pg_stat_statements from; "" without the extension.
	statsDB string
	// note says why the fallback is used.
	note string
}

func (p pgSource) name() string {
	if p.statsDB != "" {
		return "pg_stat_statements"
	}
	return "pg_stat_database"
}

// newPGSource checks the server's shared_preload_libraries. With
// pg_stat_statements loaded it creates the extension in a scratch database
// of the run (it reads every database's statements from there); the
// server's configuration is never changed.
func (e *environment) newPGSource(ctx context.Context) (pgSource, error) {
	src := pgSource{server: e.o.pgURL}
	conn, err := pgx.Connect(ctx, dbURL(e.o.pgURL, "postgres"))
	if err != nil {
		return src, fmt.Errorf("connect to %s: %w", e.o.pgURL, err)
	}
	var libs string
	err = conn.QueryRow(ctx, `SELECT current_setting('shared_preload_libraries')`).Scan(&libs)
	conn.Close(ctx)
	if err != nil {
		return src, fmt.Errorf("shared_preload_libraries: %w", err)
	}
	if !strings.Contains(libs, "pg_stat_statements") {
		src.note = fmt.Sprintf("pg_stat_statements is not loaded on this server (shared_preload_libraries = %q; "+
			"loading it needs a restart, which the bench does not do): SQL statements and commits are not counted, "+
			"only pg_stat_database's transactions (xact_commit + xact_rollback) and rows", libs)
		return src, nil
	}
	u, err := e.database(ctx, "stats")
	if err != nil {
		return src, err
	}
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		return src, err
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`); err != nil {
		src.note = fmt.Sprintf("pg_stat_statements is loaded but CREATE EXTENSION failed (%v): pg_stat_database only", err)
		return src, nil
	}
	src.statsDB = u
	return src, nil
}

// snapshot reads the counters of the databases in dbs (service → name).
func (p pgSource) snapshot(ctx context.Context, dbs map[string]string) (map[string]pgCounts, error) {
	out := map[string]pgCounts{}
	if len(dbs) == 0 {
		return out, nil
	}
	byName := map[string]string{}
	var names []string
	for svc, n := range dbs {
		byName[n] = svc
		names = append(names, n)
	}
	u := p.statsDB
	if u == "" {
		u = dbURL(p.server, "postgres")
	}
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("pg statistics: %w", err)
	}
	defer conn.Close(ctx)
	const q = `SELECT datname, xact_commit + xact_rollback, tup_fetched, tup_inserted + tup_updated + tup_deleted
FROM pg_stat_database WHERE datname = ANY($1)`
	rows, err := conn.Query(ctx, q, names)
	if err != nil {
		return nil, fmt.Errorf("pg_stat_database: %w", err)
	}
	for rows.Next() {
		var name string
		var c pgCounts
		if err := rows.Scan(&name, &c.xacts, &c.fetched, &c.written); err != nil {
			return nil, err
		}
		out[byName[name]] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pg_stat_database: %w", err)
	}
	if p.statsDB == "" {
		return out, nil
	}
	const qs = `SELECT d.datname, s.query, s.calls FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
WHERE d.datname = ANY($1)`
	rows, err = conn.Query(ctx, qs, names)
	if err != nil {
		return nil, fmt.Errorf("pg_stat_statements: %w", err)
	}
	for rows.Next() {
		var name, query string
		var calls int64
		if err := rows.Scan(&name, &query, &calls); err != nil {
			return nil, err
		}
		c := out[byName[name]]
		switch statementKind(query) {
		case "commit":
			c.commits += calls
		case "statement":
			c.statements += calls
		}
		out[byName[name]] = c
	}
	return out, rows.Err()
}

// statementKind sorts a pg_stat_statements query: "commit" for COMMIT and
// END, "utility" for the other transaction control and session statements
// (BEGIN, ROLLBACK, SET, …: part of a statement's or commit's round trips,
// not statements of their own), else "statement".
func statementKind(query string) string {
	f := strings.Fields(strings.ToUpper(strings.TrimSpace(query)))
	if len(f) == 0 {
		return "utility"
	}
	switch strings.TrimSuffix(f[0], ";") {
	case "COMMIT", "END":
		return "commit"
	case "BEGIN", "START", "ROLLBACK", "ABORT", "SET", "RESET", "SHOW", "SAVEPOINT", "RELEASE", "DISCARD",
		"DEALLOCATE", "LISTEN", "UNLISTEN", "NOTIFY":
		return "utility"
	}
	return "statement"
}

// sqsText lists SQS calls by action, largest first, entries of batch
// calls in brackets: "SendMessageBatch 0.20 (2.00 entries), …".
func (c workCounts) sqsText() string {
	type kv struct {
		k string
		v int64
	}
	var xs []kv
	for k, v := range c.SQS {
		if !strings.HasSuffix(k, ".entries") {
			xs = append(xs, kv{k, v})
		}
	}
	sort.Slice(xs, func(i, j int) bool {
		if xs[i].v != xs[j].v {
			return xs[i].v > xs[j].v
		}
		return xs[i].k < xs[j].k
	})
	var parts []string
	for _, x := range xs {
		p := fmt.Sprintf("%s %.2f", x.k, c.per(x.v))
		if n := c.SQS[x.k+".entries"]; n > 0 {
			p += fmt.Sprintf(" (%.2f entries)", c.per(n))
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return "none counted"
	}
	return strings.Join(parts, ", ")
}
