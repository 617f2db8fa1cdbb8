// Package invariants checks Orderflow's invariants against its databases
// (order, inventory, payment, notification and the simulated payment
// provider's ledger), for the suites that run the whole system: test/faults
// and test/rolling. It opens a fresh database per service, reads them
// directly (not through the services), waits until the system has settled,
// and reports what is broken: orders still pending, stock not conserved, a
// confirmed order without exactly one captured payment, invoice and
// confirmation e-mail, a failed order that holds stock or money, a 201 that
// is not a confirmed order, e-mails marked sent that never reached the SMTP
// server, a compensation parked for an operator, and money not conserved
// (the provider holding more or less than the confirmed orders are worth).
package invariants

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/pkg/dbtest"
	"github.com/orderflow/orderflow/pkg/smtptest"
)

// Databases lists the services that own a database; "provider" is the
// simulated payment provider's ledger (PROVIDER_DATABASE_URL).
var Databases = []string{"order", "inventory", "payment", "notification", "provider"}

// DB is a direct connection pool to each service's database. Its methods
// fail the test (t.Fatal) when a query fails.
type DB struct {
	t     testing.TB
	pools map[string]*pgxpool.Pool
	// URLs maps each of Databases to its database's URL.
	URLs map[string]string
	// Names are the databases' names, in the order of Databases.
	Names []string
}

// Open creates a fresh, empty database for each of Databases (the services
// migrate their own) and a pool of two connections to each, closed when
// the test ends: the checks run one query at a time, and the machine's
// Postgres is shared.
func Open(t testing.TB) *DB {
	t.Helper()
	d := &DB{t: t, pools: map[string]*pgxpool.Pool{}, URLs: map[string]string{}}
	for _, name := range Databases {
		u := dbtest.NewURL(t, nil)
		cfg, err := pgxpool.ParseConfig(u)
		if err != nil {
			t.Fatal(err)
		}
		cfg.MaxConns = 2
		pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		d.pools[name], d.URLs[name] = pool, u
		d.Names = append(d.Names, cfg.ConnConfig.Database)
	}
	return d
}

// LogConnections logs how many of the Postgres server's connections are in
// use, for a run that fails with "too many clients".
func (d *DB) LogConnections() {
	d.t.Helper()
	var used, max int
	d.Value("order", `SELECT count(*) FROM pg_stat_activity`, &used)
	d.Value("order", `SELECT setting::int FROM pg_settings WHERE name = 'max_connections'`, &max)
	d.t.Logf("Postgres: %d of max_connections %d in use before the services start", used, max)
}

// Count runs a count query on one of the databases.
func (d *DB) Count(db, q string, args ...any) int {
	d.t.Helper()
	var n int
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.pools[db].QueryRow(ctx, q, args...).Scan(&n); err != nil {
		d.t.Fatalf("%s: %s: %v", db, q, err)
	}
	return n
}

// Value runs a query answering one row of one column on one of the
// databases and scans it into dst; no row fails the test too.
func (d *DB) Value(db, q string, dst any, args ...any) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.pools[db].QueryRow(ctx, q, args...).Scan(dst); err != nil {
		d.t.Fatalf("%s: %s: %v", db, q, err)
	}
}

// Exec runs a statement on one of the databases, for a test that injects
// a fault into it.
func (d *DB) Exec(db, q string, args ...any) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := d.pools[db].Exec(ctx, q, args...); err != nil {
		d.t.Fatalf("%s: %s: %v", db, q, err)
	}
}

// PerOrder runs a query answering (order id, count) rows on one of the
// databases.
func (d *DB) PerOrder(db, q string) map[string]int {
	d.t.Helper()
	rows, err := d.pools[db].Query(context.Background(), q)
	if err != nil {
		d.t.Fatalf("%s: %v", db, err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			d.t.Fatal(err)
		}
		out[id] = n
	}
	return out
}

// ConfirmedIDs returns the ids of the confirmed orders.
func (d *DB) ConfirmedIDs() []string {
	d.t.Helper()
	rows, err := d.pools["order"].Query(context.Background(), `SELECT id::text FROM orders WHERE status = 'confirmed'`)
	if err != nil {
		d.t.Fatal(err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			d.t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// Stock returns, for each of skus, available + held (reserved or committed)
// stock, and available alone.
func (d *DB) Stock(skus []string) (total, available map[string]int) {
	d.t.Helper()
	const q = `SELECT p.sku, p.available, COALESCE(SUM(ri.quantity) FILTER (WHERE r.status IN ('reserved', 'committed')), 0)
		FROM products p
		LEFT JOIN reservation_items ri ON ri.sku = p.sku
		LEFT JOIN reservations r ON r.order_id = ri.order_id
		WHERE p.sku = ANY($1)
		GROUP BY p.sku, p.available`
	rows, err := d.pools["inventory"].Query(context.Background(), q, skus)
	if err != nil {
		d.t.Fatal(err)
	}
	defer rows.Close()
	total, available = map[string]int{}, map[string]int{}
	for rows.Next() {
		var sku string
		var avail, held int
		if err := rows.Scan(&sku, &avail, &held); err != nil {
			d.t.Fatal(err)
		}
		total[sku], available[sku] = avail+held, avail
	}
	return total, available
}

// EveryConfirmedNotified reports whether every confirmed order has an
// invoice and a sent confirmation e-mail.
func (d *DB) EveryConfirmedNotified() bool {
	d.t.Helper()
	confirmed := d.ConfirmedIDs()
	return d.Count("notification", `SELECT count(DISTINCT order_id) FROM invoices WHERE order_id = ANY($1::uuid[])`, confirmed) == len(confirmed) &&
		d.Count("notification", `SELECT count(DISTINCT order_id) FROM emails WHERE kind = 'order_confirmed' AND sent_at IS NOT NULL AND order_id = ANY($1::uuid[])`, confirmed) == len(confirmed)
}

// AsManyNotifiedAsConfirmed reports whether there are at least as many
// orders with an invoice, and with a sent confirmation e-mail, as there
// are confirmed orders: EveryConfirmedNotified by counts alone, for a
// load in which no order fails.
func (d *DB) AsManyNotifiedAsConfirmed() bool {
	d.t.Helper()
	confirmed := d.Count("order", `SELECT count(*) FROM orders WHERE status = 'confirmed'`)
	return d.Count("notification", `SELECT count(DISTINCT order_id) FROM invoices`) >= confirmed &&
		d.Count("notification", `SELECT count(DISTINCT order_id) FROM emails WHERE kind = 'order_confirmed' AND sent_at IS NOT NULL`) >= confirmed
}

// Settle waits, for at most within (whole seconds), until every saga has ended, every
// compensation has run, every outbox event was published and notified
// reports true (EveryConfirmedNotified or AsManyNotifiedAsConfirmed); it
// returns what never settled.
func (d *DB) Settle(within time.Duration, notified func() bool) []string {
	d.t.Helper()
	checks := []struct {
		what string
		ok   func() bool
	}{
		{"orders still pending", func() bool { return d.Count("order", `SELECT count(*) FROM orders WHERE status = 'pending'`) == 0 }},
		// An intent whose outcome is unknown may be a charge nobody has
		// recorded yet: the reconciler settles it, and only then can the
		// failed order's compensation see (and refund) it.
		{"payment intents with an unknown outcome", func() bool {
			return d.Count("payment", `SELECT count(*) FROM payment_intents WHERE state = 'pending'`) == 0
		}},
		{"compensations still due", func() bool {
			return d.Count("order", `SELECT count(*) FROM orders WHERE compensate_after IS NOT NULL`) == 0
		}},
		{"outbox events unsent", func() bool { return d.Count("order", `SELECT count(*) FROM outbox WHERE sent_at IS NULL`) == 0 }},
		{"confirmed orders without invoice or e-mail", notified},
	}
	deadline := time.Now().Add(within)
	var out []string
	for _, c := range checks {
		for !c.ok() {
			if time.Now().After(deadline) {
				out = append(out, fmt.Sprintf("did not settle within %ds: %s", int(within.Seconds()), c.what))
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return out
}

// Violations collects broken invariants; it keeps the first 20.
type Violations []string

// Add records one broken invariant, formatted as fmt.Sprintf does.
func (v *Violations) Add(format string, args ...any) {
	if len(*v) < 20 {
		*v = append(*v, fmt.Sprintf(format, args...))
	}
}

// CheckNoPending adds a violation when an order is still pending.
func (d *DB) CheckNoPending(v *Violations) {
	d.t.Helper()
	if n := d.Count("order", `SELECT count(*) FROM orders WHERE status = 'pending'`); n != 0 {
		v.Add("%d orders still pending", n)
	}
}

// CheckNoParked adds a violation when a compensation is parked for an
// operator (the recovery loop gave up on it): money or stock it should have
// returned is still held.
func (d *DB) CheckNoParked(v *Violations) {
	d.t.Helper()
	if n := d.Count("order", `SELECT count(*) FROM orders WHERE needs_attention_at IS NOT NULL`); n != 0 {
		v.Add("%d compensations parked as needing attention", n)
	}
}

// CheckStock adds a violation for each of skus whose available stock is
// negative or whose available + held stock differs from initial (Stock's
// total before the load).
func (d *DB) CheckStock(v *Violations, skus []string, initial map[string]int) {
	d.t.Helper()
	total, available := d.Stock(skus)
	for _, sku := range skus {
		if available[sku] < 0 {
			v.Add("%s: available %d < 0", sku, available[sku])
		}
		if total[sku] != initial[sku] {
			v.Add("%s: available + held = %d; want the initial %d", sku, total[sku], initial[sku])
		}
	}
}

// CheckOrders checks the databases against each other and against what the
// clients were told: every confirmed order has exactly one captured
// payment, one invoice and one confirmation e-mail and holds stock; no
// failed, payment_failed or rejected order holds stock or a captured
// payment; and each of created (the orders the clients got a 201 for) is
// now in one of the statuses createdMayBe.
func (d *DB) CheckOrders(v *Violations, created []string, createdMayBe ...string) {
	d.t.Helper()
	held := d.PerOrder("inventory", `SELECT r.order_id::text, SUM(ri.quantity)::int FROM reservations r
		JOIN reservation_items ri ON ri.order_id = r.order_id WHERE r.status IN ('reserved', 'committed') GROUP BY r.order_id`)
	captured := d.PerOrder("payment", `SELECT order_id::text, count(*)::int FROM payments WHERE status = 'captured' GROUP BY order_id`)
	invoices := d.PerOrder("notification", `SELECT order_id::text, count(*)::int FROM invoices GROUP BY order_id`)
	emails := d.PerOrder("notification", `SELECT order_id::text, count(*)::int FROM emails WHERE kind = 'order_confirmed' AND sent_at IS NOT NULL GROUP BY order_id`)
	statuses := d.statuses()
	for id, status := range statuses {
		switch status {
		case "confirmed":
			if captured[id] != 1 || invoices[id] != 1 || emails[id] != 1 {
				v.Add("confirmed order %s: %d captured payments, %d invoices, %d order_confirmed e-mails; want 1 each",
					id, captured[id], invoices[id], emails[id])
			}
			if held[id] == 0 {
				v.Add("confirmed order %s holds no stock", id)
			}
		case "failed", "payment_failed", "rejected":
			if held[id] != 0 || captured[id] != 0 {
				v.Add("%s order %s holds %d units and %d captured payments; want none", status, id, held[id], captured[id])
			}
		}
	}
	for _, id := range created {
		if st := statuses[id]; !slices.Contains(createdMayBe, st) {
			v.Add("the client got 201 for order %q, which is %q in the database", id, st)
		}
	}
}

// CheckEmailsSent adds a violation when the SMTP server received fewer
// messages than there are e-mails marked sent: the e-mails really left.
func (d *DB) CheckEmailsSent(v *Violations, smtp *smtptest.Server) {
	d.t.Helper()
	if sent := d.Count("notification", `SELECT count(*) FROM emails WHERE sent_at IS NOT NULL`); len(smtp.Messages()) < sent {
		v.Add("SMTP received %d messages; %d e-mails are marked sent", len(smtp.Messages()), sent)
	}
}

// CheckMoney checks money conservation: what the provider captured minus
// what it refunded (its totals, captured and refunded, in cents) equals the
// sum of the confirmed orders' totals. When it does not, it adds a
// violation and, from the provider's ledger, the charges that explain it:
// an unrefunded charge that is not the captured payment of a confirmed
// order (money taken for nothing), and a confirmed order whose charge was
// refunded or never made (an order given away).
func (d *DB) CheckMoney(v *Violations, captured, refunded int64) {
	d.t.Helper()
	confirmed := int64(d.Count("order", `SELECT coalesce(sum(total_cents), 0)::bigint FROM orders WHERE status = 'confirmed'`))
	if captured-refunded == confirmed {
		return
	}
	v.Add("money not conserved: the provider captured %d and refunded %d cents (net %d); the confirmed orders total %d",
		captured, refunded, captured-refunded, confirmed)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Each unrefunded charge, with the payment and order that own it (if any).
	held := map[string]int64{}
	rows, err := d.pools["provider"].Query(ctx, `SELECT c.id, c.amount_cents FROM charges c
		LEFT JOIN refunds r ON r.charge_id = c.id WHERE r.charge_id IS NULL`)
	if err != nil {
		d.t.Fatalf("provider: %v", err)
	}
	for rows.Next() {
		var id string
		var cents int64
		if err := rows.Scan(&id, &cents); err != nil {
			d.t.Fatal(err)
		}
		held[id] = cents
	}
	rows.Close()
	type payment struct{ orderID, status string }
	byCharge := map[string]payment{}
	rows, err = d.pools["payment"].Query(ctx, `SELECT provider_charge_id, order_id::text, status FROM payments`)
	if err != nil {
		d.t.Fatalf("payment: %v", err)
	}
	for rows.Next() {
		var charge string
		var p payment
		if err := rows.Scan(&charge, &p.orderID, &p.status); err != nil {
			d.t.Fatal(err)
		}
		byCharge[charge] = p
	}
	rows.Close()
	statuses := d.statuses()
	paid := map[string]bool{} // confirmed orders with an unrefunded charge
	for charge, cents := range held {
		p, ok := byCharge[charge]
		switch {
		case !ok:
			v.Add("provider charge %s (%d cents) is unrefunded and no payment records it (an orphaned charge)", charge, cents)
		case statuses[p.orderID] != "confirmed":
			v.Add("provider charge %s (%d cents) is unrefunded; its payment is %s, its order %s is %q",
				charge, cents, p.status, p.orderID, statuses[p.orderID])
		default:
			paid[p.orderID] = true
		}
	}
	for id, status := range statuses {
		if status == "confirmed" && !paid[id] {
			v.Add("confirmed order %s has no unrefunded charge at the provider", id)
		}
	}
}

// statuses returns every order's status, by id.
func (d *DB) statuses() map[string]string {
	d.t.Helper()
	statuses := map[string]string{}
	rows, err := d.pools["order"].Query(context.Background(), `SELECT id::text, status FROM orders`)
	if err != nil {
		d.t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, status string
		if err := rows.Scan(&id, &status); err != nil {
			d.t.Fatal(err)
		}
		statuses[id] = status
	}
	return statuses
}
