// Command floor does one kind of an order's work barely, over and over, so
// that loadtest/bench can measure what that work costs at the least on this
// machine: the floor of one order is the count of each kind of work an
// order does, each multiplied by its bare cost measured here. The kinds:
//
//	http           GET of a bare net/http JSON handler (loadtest/baseline/httpjson),
//	               keep-alive: one hop, this program being the client
//	sql_statement  a pgx primary-key SELECT, autocommit: one statement
//	sql_commit     BEGIN, a pgx INSERT, COMMIT (pgx.BeginFunc): one statement
//	               and one write commit; the bench takes the statement off
//	sqs            SendMessage, ReceiveMessage, DeleteMessage with the AWS SDK
//	               against the SQS emulator, each op one call
//	smtp           one e-mail delivered over a kept SMTP connection (one
//	               per worker, RSET between messages), as notification's
//	               mailer does
//
// -c workers run for -d and the program prints one line,
// "RESULT unit=<kind> ops=<n> errors=<n> seconds=<s>". The bench samples
// every process's CPU around it: this program's (the client side), and the
// server's (httpjson, PostgreSQL, the emulator, maildev).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/smtp"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

// op does one unit of work; worker is the worker's number, i its count.
type op func(ctx context.Context, worker, i int) error

func run(ctx context.Context, args []string, stdout io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fs := flag.NewFlagSet("floor", flag.ContinueOnError)
	unit := fs.String("unit", "", "http, sql_statement, sql_commit, sqs or smtp")
	conc := fs.Int("c", 8, "workers")
	dur := fs.Duration("d", 3*time.Second, "how long to run")
	httpURL := fs.String("http", "", "http: URL of the bare handler's product read")
	dbURL := fs.String("db", "", "sql_*: a scratch database (the program creates its table)")
	sqsURL := fs.String("sqs", "", "sqs: the SQS endpoint")
	smtpAddr := fs.String("smtp", "", "smtp: host:port of the SMTP server")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var (
		do      op
		cleanup func()
		err     error
	)
	switch *unit {
	case "http":
		do, err = httpOp(*httpURL, *conc)
	case "sql_statement", "sql_commit":
		do, cleanup, err = sqlOp(ctx, *unit, *dbURL, *conc)
	case "sqs":
		do, cleanup, err = sqsOp(ctx, *sqsURL, *conc)
	case "smtp":
		do, err = smtpOp(*smtpAddr)
	default:
		return fmt.Errorf("-unit %q: want http, sql_statement, sql_commit, sqs or smtp", *unit)
	}
	if err != nil {
		return err
	}
	if cleanup != nil {
		defer cleanup()
	}
	ops, errs, elapsed := drive(ctx, do, *conc, *dur)
	fmt.Fprintf(stdout, "RESULT unit=%s ops=%d errors=%d seconds=%.3f\n", *unit, ops, errs, elapsed.Seconds())
	if ops == 0 {
		return fmt.Errorf("%s: no operation succeeded (%d errors)", *unit, errs)
	}
	return nil
}

// drive runs do on conc workers for d and counts the ops that succeeded.
func drive(ctx context.Context, do op, conc int, d time.Duration) (ops, errs int64, elapsed time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var okN, errN atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := range conc {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				if err := do(ctx, w, i); err != nil {
					if ctx.Err() == nil {
						errN.Add(1)
					}
					continue
				}
				okN.Add(1)
			}
		})
	}
	wg.Wait()
	return okN.Load(), errN.Load(), time.Since(start)
}

func httpOp(u string, conc int) (op, error) {
	if u == "" {
		return nil, errors.New("-http is required for -unit http")
	}
	client := &http.Client{Timeout: 5 * time.Second,
		Transport: &http.Transport{MaxIdleConns: conc, MaxIdleConnsPerHost: conc}}
	return func(ctx context.Context, _, _ int) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s = %d", u, resp.StatusCode)
		}
		return nil
	}, nil
}

func sqlOp(ctx context.Context, unit, dbURL string, conc int) (op, func(), error) {
	if dbURL == "" {
		return nil, nil, errors.New("-db is required for the sql units")
	}
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, nil, fmt.Errorf("-db: %w", err)
	}
	cfg.MaxConns, cfg.MinConns = int32(conc), int32(conc)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("connect: %w", err)
	}
	const schema = `
CREATE TABLE IF NOT EXISTS floor_rows (id bigint PRIMARY KEY, v bigint NOT NULL);
INSERT INTO floor_rows SELECT g, g FROM generate_series(1, 10000) g ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS floor_log (id bigint PRIMARY KEY, v bigint NOT NULL)`
	if _, err := pool.Exec(ctx, schema); err != nil {
		pool.Close()
		return nil, nil, fmt.Errorf("schema: %w", err)
	}
	if unit == "sql_statement" {
		return func(ctx context.Context, w, i int) error {
			const q = `SELECT v FROM floor_rows WHERE id = $1`
			var v int64
			return pool.QueryRow(ctx, q, 1+(w*7919+i)%10000).Scan(&v)
		}, pool.Close, nil
	}
	// Keys unique across workers and runs: worker and count in the low
	// bits, the start time above them.
	base := time.Now().UnixNano() / 1000 << 20
	return func(ctx context.Context, w, i int) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			const q = `INSERT INTO floor_log (id, v) VALUES ($1, $2)`
			_, err := tx.Exec(ctx, q, base+int64(i)<<8+int64(w), i)
			return err
		})
	}, pool.Close, nil
}

func sqsOp(ctx context.Context, endpoint string, conc int) (op, func(), error) {
	if endpoint == "" {
		return nil, nil, errors.New("-sqs is required for -unit sqs")
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, config.WithRegion("us-east-1"),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("test", "test", "")))
	if err != nil {
		return nil, nil, fmt.Errorf("aws config: %w", err)
	}
	client := sqs.NewFromConfig(awsCfg, func(o *sqs.Options) { o.BaseEndpoint = aws.String(endpoint) })
	name := fmt.Sprintf("bench-floor-%d", time.Now().UnixNano())
	q, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		return nil, nil, fmt.Errorf("create queue %s: %w", name, err)
	}
	url := q.QueueUrl
	cleanup := func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = client.DeleteQueue(dctx, &sqs.DeleteQueueInput{QueueUrl: url})
	}
	// One op is one call: each worker cycles send, receive, delete, so the
	// three kinds run equally often. A receive that finds nothing (another
	// worker took the message) is still one call.
	// receipts[w] is worker w's last received message; only w touches it.
	receipts := make([]*string, conc)
	return func(ctx context.Context, w, i int) error {
		switch i % 3 {
		case 0:
			_, err := client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: url,
				MessageBody: aws.String(`{"order_id":"` + strconv.Itoa(w) + "-" + strconv.Itoa(i) + `","total_cents":1999}`)})
			return err
		case 1:
			out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: url, MaxNumberOfMessages: 1})
			if err != nil {
				return err
			}
			receipts[w] = nil
			if len(out.Messages) > 0 {
				receipts[w] = out.Messages[0].ReceiptHandle
			}
			return nil
		default:
			if receipts[w] == nil {
				// Nothing to delete: a GetQueueUrl keeps the cycle at one call.
				_, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
				return err
			}
			_, err := client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: url, ReceiptHandle: receipts[w]})
			receipts[w] = nil
			return err
		}
	}, cleanup, nil
}

func smtpOp(addr string) (op, error) {
	if addr == "" {
		return nil, errors.New("-smtp is required for -unit smtp")
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("-smtp %q: %w", addr, err)
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	var kept sync.Map // worker → *smtp.Client, each used by its worker only
	client := func(ctx context.Context, w int) (*smtp.Client, error) {
		if c, ok := kept.Load(w); ok {
			return c.(*smtp.Client), nil
		}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		c, err := smtp.NewClient(conn, host)
		if err != nil {
			conn.Close()
			return nil, err
		}
		kept.Store(w, c)
		return c, nil
	}
	return func(ctx context.Context, w, i int) error {
		c, err := client(ctx, w)
		if err != nil {
			return err
		}
		send := func() error {
			if err := c.Mail("orders@orderflow.local"); err != nil {
				return err
			}
			if err := c.Rcpt("floor@example.com"); err != nil {
				return err
			}
			wc, err := c.Data()
			if err != nil {
				return err
			}
			msg := fmt.Sprintf("From: orders@orderflow.local\r\nTo: floor@example.com\r\nSubject: Order floor-%d-%d confirmed\r\n"+
				"Message-ID: <floor-%d-%d@bench>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"+
				"Thank you for your order. Total: 19.99 USD.\r\n", w, i, w, i)
			if _, err := io.WriteString(wc, msg); err != nil {
				return err
			}
			if err := wc.Close(); err != nil {
				return err
			}
			return c.Reset()
		}
		if err := send(); err != nil {
			kept.Delete(w) // the next op of this worker dials again
			c.Close()
			return err
		}
		return nil
	}, nil
}
