package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The floor of one order: the count of each kind of work one order does
// (counts.go, around the orders phase's peak), each multiplied by the CPU
// the bare version of that work costs in the same run, measured here by
// loadtest/baseline/floor. CPU per order ÷ floor says how far the services
// are from doing their work for nothing.

// floorUnits are the bare kinds of work, by the floor program's -unit, and
// the process that serves each (its CPU is the server side; the floor
// program's own, counted as the load generator, is the client side).
var floorUnits = []struct{ unit, server, name string }{
	{"http", "httpjson", "HTTP hop: GET of a bare net/http JSON handler, keep-alive"},
	{"sql_statement", "postgres", "SQL statement: pgx primary-key SELECT, autocommit"},
	{"sql_commit", "postgres", "SQL write transaction: BEGIN, pgx INSERT, COMMIT"},
	{"sqs", "fauxqs (SQS)", "SQS call: SDK SendMessage / ReceiveMessage / DeleteMessage, in turn"},
	{"smtp", "maildev (SMTP)", "SMTP delivery: one e-mail over a kept connection"},
}

// goServices are the processes of the product written in Go.
var goServices = []string{"order", "inventory", "payment", "notification", "provider"}

// benchFloor measures the bare units against the run's own SQS emulator,
// maildev and PostgreSQL server.
func benchFloor(ctx context.Context, e *environment, r *report) error {
	bare, err := e.baseline(ctx, "httpjson")
	if err != nil {
		return err
	}
	db, err := e.database(ctx, "floor")
	if err != nil {
		return err
	}
	conc := 8
	for _, u := range floorUnits {
		args := []string{"-unit", u.unit, "-c", fmt.Sprint(conc), "-d", e.o.floorDur.String()}
		switch u.unit {
		case "http":
			args = append(args, "-http", bare+"/v1/products/SKU-00001")
		case "sql_statement", "sql_commit":
			args = append(args, "-db", db)
		case "sqs":
			args = append(args, "-sqs", e.sqsDirect)
		case "smtp":
			args = append(args, "-smtp", e.smtp)
		}
		logPath := filepath.Join(e.logDir, "floor-"+u.unit+".log")
		var res readResult
		err := r.profileCPU(e.procNames(), "floor_"+u.unit, func() (int64, error) {
			fctx, cancel := context.WithTimeout(ctx, e.o.floorDur+time.Minute)
			defer cancel()
			err := e.command(fctx, logPath, filepath.Join(e.dir, "floor"), args...)
			out, _ := os.ReadFile(logPath)
			fmt.Print(indent(string(out)))
			if err != nil {
				return 0, fmt.Errorf("floor -unit %s: %w (log %s)", u.unit, err, logPath)
			}
			res = parseResult(string(out))
			return int64(res.num("ops")), nil
		})
		if err != nil {
			return err
		}
		m := measurement{Key: "floor_" + u.unit, Name: "floor: " + u.name, Group: "floor",
			Tool: fmt.Sprintf("loadtest/baseline/floor, %d workers, %s", conc, e.o.floorDur), Requests: int64(res.num("ops"))}
		if s := res.num("seconds"); s > 0 {
			m.RPS = res.num("ops") / s
		}
		if n := res.num("ops") + res.num("errors"); n > 0 {
			m.ErrorRate = res.num("errors") / n
		}
		r.add(m)
	}
	return nil
}

// parseResult reads a "RESULT k=v …" line.
func parseResult(out string) readResult {
	kv := readResult{}
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "RESULT ") {
			continue
		}
		for _, f := range strings.Fields(line)[1:] {
			k, v, _ := strings.Cut(f, "=")
			kv[k] = v
		}
	}
	return kv
}

// floorUnit is the CPU of one bare operation, ms: the client (the floor
// program), the server, the kernel's threads.
type floorUnit struct{ Client, Server, Kernel float64 }

func (u floorUnit) total() float64 { return u.Client + u.Server + u.Kernel }

// unitOf reads a bare unit's profile. Other work on the machine (this
// program, other processes) is not the unit's and is left out.
func unitOf(p cpuProfile, server string) floorUnit {
	share := func(role string) float64 { s, _ := p.share(role); return s.MsPer }
	return floorUnit{Client: share(loadGenerator), Server: share(server), Kernel: share("kernel threads")}
}

// minus is u − v, each part at least 0: the commit's part of a write
// transaction.
func (u floorUnit) minus(v floorUnit) floorUnit {
	return floorUnit{Client: max(0, u.Client-v.Client), Server: max(0, u.Server-v.Server), Kernel: max(0, u.Kernel-v.Kernel)}
}

func (u floorUnit) times(n float64) floorUnit {
	return floorUnit{Client: n * u.Client, Server: n * u.Server, Kernel: n * u.Kernel}
}

// floorWork is one kind of work in the floor: how many per order, what one
// costs barely, and which rows of the CPU table its client and server
// sides belong to.
type floorWork struct {
	Name           string
	PerOrder       float64
	Unit           floorUnit
	Client, Server string
}

// floorRow is one row of the comparison: a group of processes.
type floorRow struct {
	Role          string
	Actual, Floor float64 // ms per order
}

// Ratio is actual ÷ floor, 0 without a floor.
func (f floorRow) Ratio() float64 {
	if f.Floor <= 0 {
		return 0
	}
	return f.Actual / f.Floor
}

// orderFloor is the floor of one order and the run's CPU per order beside it.
type orderFloor struct {
	Counts workCounts
	Work   []floorWork
	Rows   []floorRow
	// Total is the whole machine's CPU per order, Floor the floor's.
	Total, Floor float64
	// Fallback is set when the SQL counts are transactions only.
	Fallback bool
}

// Ratio is the whole machine's CPU per order ÷ the floor.
func (f orderFloor) Ratio() float64 {
	if f.Floor <= 0 {
		return 0
	}
	return f.Total / f.Floor
}

// goServicesRow is the floor's row of the product's Go processes.
const (
	goServicesRow = "Go services (order, inventory, payment, notification, provider)"
	noFloorRow    = "no floor: Redis, Ory Hydra, this program, other work"
)

// computeFloor is the floor of an order from the counts c and the bare
// units, beside the CPU profile actual of the same measurement. An order's
// first hop comes from the load generator (its client side is the load
// generator's row); the hops between services are Go on both sides. SQL
// costs a bare statement per statement and the commit part of a bare write
// transaction per COMMIT; without pg_stat_statements only the transactions
// are known, and each costs one bare autocommit statement: a lower floor.
func computeFloor(c workCounts, units map[string]floorUnit, actual cpuProfile) orderFloor {
	f := orderFloor{Counts: c, Total: actual.TotalMs}
	stmt, tx := units["sql_statement"], units["sql_commit"]
	hop := units["http"]
	f.Work = []floorWork{
		{"HTTP requests from the load generator to order", c.per(c.externalHops()), hop, loadGenerator, goServicesRow},
		{"HTTP hops between the services", c.per(c.internalHops()), hop, goServicesRow, goServicesRow},
	}
	if c.SQLSource == "pg_stat_statements" {
		f.Work = append(f.Work,
			floorWork{"SQL statements", c.per(c.Statements), stmt, goServicesRow, "postgres"},
			floorWork{"SQL commits (COMMIT of a write transaction)", c.per(c.Commits), tx.minus(stmt), goServicesRow, "postgres"})
	} else {
		f.Fallback = true
		f.Work = append(f.Work,
			floorWork{"SQL transactions (each as one autocommit statement)", c.per(c.Transactions), stmt, goServicesRow, "postgres"})
	}
	f.Work = append(f.Work,
		floorWork{"SQS calls", c.per(c.sqsCalls()), units["sqs"], goServicesRow, "fauxqs (SQS)"},
		floorWork{"SMTP deliveries", c.per(c.Emails), units["smtp"], goServicesRow, "maildev (SMTP)"})

	floorBy := map[string]float64{}
	for _, w := range f.Work {
		x := w.Unit.times(w.PerOrder)
		floorBy[w.Client] += x.Client
		floorBy[w.Server] += x.Server
		floorBy["kernel threads"] += x.Kernel
		f.Floor += x.total()
	}
	actualBy := map[string]float64{}
	for _, sh := range actual.Shares {
		row := sh.Role
		switch {
		case slices.Contains(goServices, sh.Role):
			row = goServicesRow
		case sh.Role == loadGenerator, sh.Role == "postgres", sh.Role == "fauxqs (SQS)", sh.Role == "maildev (SMTP)",
			sh.Role == "kernel threads":
		default:
			row = noFloorRow
		}
		actualBy[row] += sh.MsPer
	}
	for _, role := range []string{goServicesRow, "postgres", loadGenerator, "fauxqs (SQS)", "maildev (SMTP)",
		"kernel threads", noFloorRow} {
		f.Rows = append(f.Rows, floorRow{Role: role, Actual: actualBy[role], Floor: floorBy[role]})
	}
	return f
}

// goCPU is the Go services' CPU per order in p.
func goCPU(p cpuProfile) float64 {
	var sum float64
	for _, s := range goServices {
		sh, _ := p.share(s)
		sum += sh.MsPer
	}
	return sum
}

// orderFloor is the run's floor, when it measured the counts, the units
// and the CPU per order.
func (r *report) orderFloor() (orderFloor, bool) {
	c, ok := r.Counts["orders_peak"]
	actual, ok2 := r.CPU["orders_peak"]
	if !ok || !ok2 || c.Orders <= 0 {
		return orderFloor{}, false
	}
	units := map[string]floorUnit{}
	for _, u := range floorUnits {
		p, ok := r.CPU["floor_"+u.unit]
		if !ok || p.Ops <= 0 {
			return orderFloor{}, false
		}
		units[u.unit] = unitOf(p, u.server)
	}
	return computeFloor(c, units, actual), true
}

// floorMarkdown writes "The floor of one order".
func (r *report) floorMarkdown(b *bytes.Buffer) {
	f, ok := r.orderFloor()
	if !ok {
		return
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	c := f.Counts
	w("## The floor of one order\n\n")
	w("What one order costs at the least on this machine: each kind of work an order does, counted around the\n")
	w("orders phase's peak (%d orders in %.0f s, and %.0f s more for the relay, the workers and PostgreSQL's\n", c.Orders, c.Seconds, floorDrain.Seconds())
	w("statistics to catch up), times the CPU the bare version of that work costs in the same run\n")
	w("(loadtest/baseline/floor: a bare `net/http` handler, pgx, the AWS SDK and `net/smtp` against the same\n")
	w("PostgreSQL, SQS emulator and maildev). The floor leaves out everything an order does beyond that work:\n")
	w("its routing, JSON, validation, token checks, rate limiting (Redis), resilience policies and saga logic.\n\n")
	w("| work per order | count | counted from |\n|---|---:|---|\n")
	served := func(svc string) string { return fmt.Sprintf("%.2f", c.per(c.Served[svc])) }
	w("| HTTP requests the load generator sent | %.2f | k6's http_reqs |\n", c.per(c.ClientRequests))
	w("| HTTP requests order served | %s | order's orderflow_http_requests_total |\n", served("order"))
	w("| HTTP hops between the services | %.2f | inventory %s, payment %s, notification %s (their orderflow_http_requests_total); provider %s (one per POST /v1/payments: the provider counts nothing) |\n",
		c.per(c.internalHops()), served("inventory"), served("payment"), served("notification"), served("provider"))
	if c.SQLSource == "pg_stat_statements" {
		w("| SQL statements (BEGIN, COMMIT, SET… not counted) | %.2f | pg_stat_statements calls of the stack's databases |\n", c.per(c.Statements))
		w("| SQL commits (explicit COMMIT) | %.2f | pg_stat_statements |\n", c.per(c.Commits))
	} else {
		w("| SQL statements, commits | not counted | %s |\n", c.SQLNote)
	}
	w("| SQL transactions | %.2f | pg_stat_database xact_commit + xact_rollback of the stack's databases (%s) |\n",
		c.per(c.Transactions), r.byDatabaseText(c))
	w("| rows read / written | %.1f / %.1f | pg_stat_database tup_fetched / tup_inserted + tup_updated + tup_deleted |\n",
		c.per(c.RowsRead), c.per(c.RowsWritten))
	w("| SQS calls | %.2f | loadtest/sqscount in front of the emulator: %s |\n", c.per(c.sqsCalls()), c.sqsText())
	w("| SMTP deliveries | %.2f | notification's e-mails handled ok (orderflow_messages_processed_total) |\n", c.per(c.Emails))
	w("| invoices | %.2f | notification's invoices handled ok |\n\n", c.per(c.Invoices))
	if lag := c.Orders - c.Emails; float64(lag) > 0.05*float64(c.Orders) {
		w("The e-mail worker had not caught up by the end of the window: %d of the %d orders' e-mails were sent in it\n", c.Emails, c.Orders)
		w("(%d invoices). The CPU per order leaves the rest out as well, so both sides of the ratio lack the same work;\n", c.Invoices)
		w("a floor with one delivery per order would be %.3f ms higher.\n\n", float64(lag)/float64(c.Orders)*r.floorUnitTotal("smtp"))
	}
	w("The bare units, CPU per operation (ms; client = the floor program, server = the process named):\n\n")
	w("| bare unit | ops/s | client | server | kernel threads | total |\n|---|---:|---:|---:|---:|---:|\n")
	for _, u := range floorUnits {
		p := r.CPU["floor_"+u.unit]
		x := unitOf(p, u.server)
		m, _ := r.get("floor_" + u.unit)
		w("| %s (server: %s) | %s | %.4f | %.4f | %.4f | **%.4f** |\n", u.name, u.server, rps(m.RPS), x.Client, x.Server, x.Kernel, x.total())
	}
	w("\nThe floor, work by work:\n\n| work | per order | ms per one | ms per order |\n|---|---:|---:|---:|\n")
	for _, x := range f.Work {
		w("| %s | %.2f | %.4f | %.3f |\n", x.Name, x.PerOrder, x.Unit.total(), x.PerOrder*x.Unit.total())
	}
	w("| **floor of one order** | | | **%.3f** |\n\n", f.Floor)
	if f.Fallback {
		w("Without pg_stat_statements the SQL part of the floor counts each transaction as one autocommit\n")
		w("statement: a transaction of several statements and a write commit costs more, so this floor is lower\n")
		w("than the one pg_stat_statements would give, and the ratios below are upper bounds.\n\n")
	}
	w("CPU per order (the orders phase's peak) against the floor, by process:\n\n")
	w("| processes | ms per order | floor, ms | ÷ floor |\n|---|---:|---:|---:|\n")
	for _, row := range f.Rows {
		ratio := "–"
		if row.Floor > 0 {
			ratio = fmt.Sprintf("%.1f×", row.Ratio())
		}
		floor := "–"
		if row.Floor > 0 {
			floor = fmt.Sprintf("%.3f", row.Floor)
		}
		w("| %s | %.3f | %s | %s |\n", row.Role, row.Actual, floor, ratio)
	}
	w("| **whole machine** | **%.3f** | **%.3f** | **%.2f×** |\n\n", f.Total, f.Floor, f.Ratio())
	w("The SQS calls pass loadtest/sqscount, which counts them; its CPU is left out of every figure.\n\n")
}

// floorUnitTotal is a bare unit's CPU per operation, 0 when not measured.
func (r *report) floorUnitTotal(unit string) float64 {
	for _, u := range floorUnits {
		if u.unit == unit {
			return unitOf(r.CPU["floor_"+unit], u.server).total()
		}
	}
	return 0
}

// byDatabaseText lists the transactions per order by service.
func (r *report) byDatabaseText(c workCounts) string {
	var parts []string
	for _, svc := range []string{"order", "inventory", "payment", "notification", "provider"} {
		if v, ok := c.ByDatabase[svc]; ok {
			p := fmt.Sprintf("%s %.2f", svc, c.per(v[0]))
			if c.SQLSource == "pg_stat_statements" {
				p += fmt.Sprintf(" (%.2f statements)", c.per(v[1]))
			}
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, ", ")
}

// floorDrain is how long the counts wait after the load for the
// background work of its last orders.
const floorDrain = 2 * time.Second
