package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

// floorCounts are 100 orders' work: 3 requests from the load generator to
// order, 4 hops between services, 20 statements and 5 commits, 6 SQS calls
// and 1 e-mail each.
func floorCounts(source string) workCounts {
	return workCounts{Orders: 100, Seconds: 10, ClientRequests: 300,
		Served: map[string]int64{"order": 300, "inventory": 200, "payment": 100, "provider": 100},
		SQS:    map[string]int64{"SendMessageBatch": 200, "SendMessageBatch.entries": 200, "ReceiveMessage": 200, "DeleteMessageBatch": 200},
		Emails: 100, Invoices: 100,
		SQLSource: source, Statements: 2000, Commits: 500, Transactions: 800,
		ByDatabase: map[string][2]int64{"order": {300, 900}}}
}

func floorUnitsFixture() map[string]floorUnit {
	return map[string]floorUnit{
		"http":          {Client: 0.02, Server: 0.03, Kernel: 0.01},  // 0.06 a hop
		"sql_statement": {Client: 0.01, Server: 0.04, Kernel: 0.00},  // 0.05 a statement
		"sql_commit":    {Client: 0.03, Server: 0.12, Kernel: 0.005}, // commit part: 0.02 + 0.08 + 0.005
		"sqs":           {Client: 0.05, Server: 0.10, Kernel: 0.00},
		"smtp":          {Client: 0.10, Server: 0.50, Kernel: 0.02},
	}
}

func approx(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestComputeFloor(t *testing.T) {
	actual := cpuProfile{Ops: 100, TotalMs: 10, Shares: []cpuShare{
		{Role: "order", MsPer: 1.5}, {Role: "inventory", MsPer: 1}, {Role: "provider", MsPer: 0.5},
		{Role: "postgres", MsPer: 3}, {Role: loadGenerator, MsPer: 2}, {Role: "fauxqs (SQS)", MsPer: 0.8},
		{Role: "maildev (SMTP)", MsPer: 0.7}, {Role: "redis", MsPer: 0.3}, {Role: benchRole, MsPer: 0.2},
	}}
	t.Run("pg_stat_statements", func(t *testing.T) {
		f := computeFloor(floorCounts("pg_stat_statements"), floorUnitsFixture(), actual)
		if f.Fallback {
			t.Error("Fallback = true with pg_stat_statements")
		}
		// hops 3×0.06 + 4×0.06, statements 20×0.05, commits 5×0.105, SQS 6×0.15, SMTP 1×0.62
		want := 0.18 + 0.24 + 1.0 + 0.525 + 0.9 + 0.62
		if !approx(f.Floor, want) {
			t.Errorf("Floor = %v; want %v", f.Floor, want)
		}
		if !approx(f.Ratio(), 10/want) {
			t.Errorf("Ratio() = %v; want %v", f.Ratio(), 10/want)
		}
		rows := map[string]floorRow{}
		var sumFloor, sumActual float64
		for _, r := range f.Rows {
			rows[r.Role] = r
			sumFloor += r.Floor
			sumActual += r.Actual
		}
		if !approx(sumFloor, f.Floor) || !approx(sumActual, actual.TotalMs) {
			t.Errorf("rows add up to floor %v, actual %v; want %v, %v", sumFloor, sumActual, f.Floor, actual.TotalMs)
		}
		// The first hop's client is the load generator; every other client side is Go.
		if got := rows[loadGenerator].Floor; !approx(got, 3*0.02) {
			t.Errorf("load generator floor = %v; want %v", got, 3*0.02)
		}
		goWant := 3*0.03 + 4*0.05 + 20*0.01 + 5*0.02 + 6*0.05 + 1*0.10
		if got := rows[goServicesRow]; !approx(got.Floor, goWant) || !approx(got.Actual, 3) {
			t.Errorf("Go row = %+v; want floor %v, actual 3", got, goWant)
		}
		if got := rows["postgres"].Floor; !approx(got, 20*0.04+5*0.08) {
			t.Errorf("postgres floor = %v; want %v", got, 20*0.04+5*0.08)
		}
		if got := rows[noFloorRow]; got.Floor != 0 || !approx(got.Actual, 0.5) || got.Ratio() != 0 {
			t.Errorf("no-floor row = %+v; want actual 0.5 (redis, this program), no floor", got)
		}
	})
	t.Run("fallback counts transactions as statements", func(t *testing.T) {
		f := computeFloor(floorCounts("pg_stat_database"), floorUnitsFixture(), actual)
		if !f.Fallback {
			t.Fatal("Fallback = false without pg_stat_statements")
		}
		var sql float64
		for _, w := range f.Work {
			if strings.HasPrefix(w.Name, "SQL") {
				sql += w.PerOrder * w.Unit.total()
			}
		}
		if !approx(sql, 8*0.05) {
			t.Errorf("SQL floor = %v; want 8 transactions × 0.05", sql)
		}
	})
}

func TestCommitUnitNeverNegative(t *testing.T) {
	got := floorUnit{Client: 0.01, Server: 0.05}.minus(floorUnit{Client: 0.02, Server: 0.04, Kernel: 0.01})
	if got.Client != 0 || !approx(got.Server, 0.01) || got.Kernel != 0 {
		t.Errorf("minus = %+v; want {0 0.01 0}", got)
	}
}

func TestWorkCounts(t *testing.T) {
	c := floorCounts("pg_stat_statements")
	if got := c.externalHops(); got != 300 {
		t.Errorf("externalHops() = %d; want 300", got)
	}
	if got := c.internalHops(); got != 400 {
		t.Errorf("internalHops() = %d; want 400", got)
	}
	if got := c.sqsCalls(); got != 600 {
		t.Errorf("sqsCalls() = %d; want 600 (entries are not calls)", got)
	}
	if got := c.sqsText(); got != "DeleteMessageBatch 2.00, ReceiveMessage 2.00, SendMessageBatch 2.00 (2.00 entries)" {
		t.Errorf("sqsText() = %q", got)
	}
	if got := (workCounts{}).per(5); got != 0 {
		t.Errorf("per with no orders = %v; want 0", got)
	}
}

func TestDiffCounts(t *testing.T) {
	before := counterSnapshot{served: map[string]int64{"order": 10}, emails: 1, invoice: 2,
		sqs: map[string]int64{"ReceiveMessage": 5}, db: map[string]pgCounts{"order": {xacts: 100, statements: 300, commits: 50}}}
	after := counterSnapshot{served: map[string]int64{"order": 40, "inventory": 20}, emails: 11, invoice: 12,
		sqs: map[string]int64{"ReceiveMessage": 5, "SendMessageBatch": 7},
		db:  map[string]pgCounts{"order": {xacts: 130, statements: 390, commits: 60, fetched: 4, written: 9}}}
	c := diffCounts(before, after, 10, 30, 2.5, pgSource{statsDB: "x"})
	if c.Served["order"] != 30 || c.Served["inventory"] != 20 || c.Emails != 10 || c.Invoices != 10 {
		t.Errorf("served %v, emails %d, invoices %d; want order 30, inventory 20, 10, 10", c.Served, c.Emails, c.Invoices)
	}
	if _, ok := c.SQS["ReceiveMessage"]; ok || c.SQS["SendMessageBatch"] != 7 {
		t.Errorf("SQS = %v; want only SendMessageBatch 7", c.SQS)
	}
	if c.Transactions != 30 || c.Statements != 90 || c.Commits != 10 || c.RowsWritten != 9 || c.SQLSource != "pg_stat_statements" {
		t.Errorf("SQL = %+v", c)
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP orderflow_http_requests_total HTTP requests served.
# TYPE orderflow_http_requests_total counter
orderflow_http_requests_total{method="POST",otel_scope_name="orderflow",route="/v1/orders",status="201"} 120
orderflow_http_requests_total{method="GET",route="/v1/orders/{id}",status="200"} 30
orderflow_http_requests_total{method="GET",route="/metrics",status="200"} 3
orderflow_http_requests_total{method="GET",route="/readyz",status="200"} 7
orderflow_messages_processed_total{consumer="emails",outcome="ok",queue="order-emails-x"} 15
orderflow_messages_processed_total{consumer="emails",outcome="failed",queue="order-emails-x"} 2
orderflow_messages_processed_total{consumer="invoices",outcome="ok",queue="order-invoices-x"} 14
weird_total{note="a, \"quoted\" } value"} 1.5e3
plain_gauge 4
`
	m := parseMetrics(text)
	if got := m.servedRequests(); got != 150 {
		t.Errorf("servedRequests() = %d; want 150 (probes and /metrics left out)", got)
	}
	if got := m.processed("email"); got != 15 {
		t.Errorf("processed(email) = %d; want 15", got)
	}
	if got := m.processed("invoice"); got != 14 {
		t.Errorf("processed(invoice) = %d; want 14", got)
	}
	if got := m.sum("weird_total", func(l map[string]string) bool { return l["note"] == `a, "quoted" } value` }); got != 1500 {
		t.Errorf("weird_total = %d; want 1500 (a quoted label with a comma, quotes and a brace)", got)
	}
	if got := m.sum("plain_gauge", nil); got != 4 {
		t.Errorf("plain_gauge = %d; want 4", got)
	}
}

func TestStatementKind(t *testing.T) {
	for q, want := range map[string]string{
		"begin": "utility", "COMMIT": "commit", "end;": "commit", "rollback": "utility",
		"SET search_path = public": "utility", "select v from t where id = $1": "statement",
		"  INSERT INTO orders (id) VALUES ($1)": "statement", "WITH x AS (SELECT 1) SELECT * FROM x": "statement",
		"": "utility",
	} {
		if got := statementKind(q); got != want {
			t.Errorf("statementKind(%q) = %q; want %q", q, got, want)
		}
	}
}

func TestFloorMarkdown(t *testing.T) {
	r := &report{CPU: map[string]cpuProfile{"orders_peak": {Ops: 100, TotalMs: 10,
		Shares: []cpuShare{{Role: "order", MsPer: 4}, {Role: "postgres", MsPer: 6}}}}}
	r.setCounts("orders_peak", floorCounts("pg_stat_database"))
	var b bytes.Buffer
	r.floorMarkdown(&b)
	if b.Len() != 0 {
		t.Fatalf("floorMarkdown without the bare units wrote %q", b.String())
	}
	for _, u := range floorUnits {
		p := cpuProfile{Ops: 1000, Shares: []cpuShare{{Role: loadGenerator, MsPer: 0.02}, {Role: u.server, MsPer: 0.03}}}
		r.CPU["floor_"+u.unit] = p
		r.add(measurement{Key: "floor_" + u.unit, RPS: 5000})
	}
	r.floorMarkdown(&b)
	for _, s := range []string{"## The floor of one order", "| SQL statements, commits | not counted |",
		"SQL transactions (each as one autocommit statement)", "| **whole machine** | **10.000** |", "upper bounds"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("floor section lacks %q:\n%s", s, b.String())
		}
	}
	r.evaluate()
	var names []string
	for _, x := range r.Targets {
		names = append(names, x.Name)
	}
	// orders_peak has no measurement here: the CPU targets need one.
	if strings.Contains(strings.Join(names, "|"), targetCPUFloor) {
		t.Errorf("a floor target without the orders_peak measurement: %v", names)
	}
	r.add(measurement{Key: "orders_peak", RPS: 150, Group: "orders"})
	r.Targets, r.Ratios, r.Findings = nil, nil, nil
	r.evaluate()
	got := map[string]target{}
	for _, x := range r.Targets {
		got[x.Name] = x
	}
	if x := got[targetCPUPerOrder]; x.Met || !strings.HasPrefix(x.Measured, "10.00 ms") {
		t.Errorf("CPU target = %+v; want 10.00 ms, not met", x)
	}
	if x := got[targetGoCPU]; x.Met || !strings.HasPrefix(x.Measured, "4.00 ms") {
		t.Errorf("Go target = %+v; want 4.00 ms, not met", x)
	}
	if x, ok := got[targetCPUFloor]; !ok || !strings.Contains(x.Measured, "transactions only") {
		t.Errorf("floor target = %+v; want one saying the SQL floor is transactions only", x)
	}
}
