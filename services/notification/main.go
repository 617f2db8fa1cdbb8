// Command notification runs Orderflow's notification service: the invoice
// and e-mail workers on their SQS queues, and the read API over what they
// produced.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/pkg/auth"
	"github.com/orderflow/orderflow/pkg/env"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/queue"
	"github.com/orderflow/orderflow/pkg/retention"
	"github.com/orderflow/orderflow/pkg/telemetry"
	"github.com/orderflow/orderflow/pkg/web"
	"github.com/orderflow/orderflow/services/notification/internal/notification"
)

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "notification:", err)
		os.Exit(1)
	}
}

type config struct {
	addr         string
	databaseURL  string
	dbMaxConns   int
	smtpAddr     string
	mailFrom     string
	invoiceQueue string
	emailQueue   string
	concurrency  int
	visibility   time.Duration
	maxReceives  int
	logLevel     string
	sqs          queue.Config
	auth         auth.Config
	// trustedProxies may set X-Forwarded-For (TRUSTED_PROXIES).
	trustedProxies []netip.Prefix
	// shutdownDrain is how long the process keeps serving after SIGTERM
	// with /readyz failing, so a load balancer stops routing to it first
	// (SHUTDOWN_DRAIN; 0 by default, make dev REPLICAS>1 sets 3s).
	shutdownDrain time.Duration
}

func readConfig(getenv func(string) string) (config, error) {
	r := env.New(getenv)
	c := config{
		addr:          r.String("NOTIFICATION_ADDR", ":8083"),
		databaseURL:   r.String("NOTIFICATION_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/notifications?sslmode=disable"),
		dbMaxConns:    r.Int("NOTIFICATION_DB_MAX_CONNS", 20),
		smtpAddr:      r.String("NOTIFICATION_SMTP_ADDR", "127.0.0.1:1025"),
		mailFrom:      r.String("NOTIFICATION_MAIL_FROM", "orders@orderflow.local"),
		invoiceQueue:  r.String("NOTIFICATION_INVOICE_QUEUE", "order-invoices"),
		emailQueue:    r.String("NOTIFICATION_EMAIL_QUEUE", "order-emails"),
		concurrency:   r.Int("NOTIFICATION_CONCURRENCY", 4),
		visibility:    r.Duration("NOTIFICATION_VISIBILITY_TIMEOUT", 30*time.Second),
		maxReceives:   r.Int("NOTIFICATION_MAX_RECEIVES", 5),
		logLevel:      r.String("LOG_LEVEL", "info"),
		sqs:           queue.ReadConfig(getenv),
		shutdownDrain: r.Duration("SHUTDOWN_DRAIN", 0),
	}
	var authErr, proxyErr error
	c.auth, authErr = auth.ReadConfig(getenv)
	c.trustedProxies, proxyErr = web.ParsePrefixes(r.String("TRUSTED_PROXIES", ""))
	errs := []error{authErr, proxyErr}
	if c.concurrency < 1 {
		errs = append(errs, fmt.Errorf("NOTIFICATION_CONCURRENCY=%d must be at least 1", c.concurrency))
	}
	// SQS counts the visibility timeout in whole seconds; below 2s the
	// handler deadline (3/4 of it) leaves no room for real work.
	if c.visibility < 2*time.Second || c.visibility > 12*time.Hour {
		errs = append(errs, fmt.Errorf("NOTIFICATION_VISIBILITY_TIMEOUT=%s must be between 2s and 12h", c.visibility))
	}
	if c.maxReceives < 1 || c.maxReceives > 1000 {
		errs = append(errs, fmt.Errorf("NOTIFICATION_MAX_RECEIVES=%d must be between 1 and 1000", c.maxReceives))
	}
	return c, errors.Join(append([]error{r.Err()}, errs...)...)
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	flags := flag.NewFlagSet(args[0], flag.ContinueOnError)
	flags.SetOutput(stderr)
	if err := flags.Parse(args[1:]); err != nil {
		return err
	}
	cfg, err := readConfig(getenv)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := telemetry.NewLogger(stdout, "notification", cfg.logLevel)
	log.InfoContext(ctx, "starting", "addr", cfg.addr, "database", postgres.Redact(cfg.databaseURL),
		"smtp", cfg.smtpAddr, "invoice_queue", cfg.invoiceQueue, "email_queue", cfg.emailQueue,
		"concurrency", cfg.concurrency, "visibility_timeout", cfg.visibility.String(),
		"max_receives", cfg.maxReceives, "sqs_endpoint", cfg.sqs.Endpoint,
		"auth_issuer", cfg.auth.Issuer, "auth_audience", cfg.auth.Audience, "auth_cache_ttl", cfg.auth.CacheTTL.String(),
		"trusted_proxies", fmt.Sprint(cfg.trustedProxies))
	tel, err := telemetry.New(ctx, "notification", getenv)
	if err != nil {
		return err
	}
	defer tel.Close(ctx, log)

	pool, err := postgres.Open(ctx, cfg.databaseURL, cfg.dbMaxConns, postgres.WithTracer(tel.PgxTracer("notifications")))
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := tel.ObservePool(pool, "notifications"); err != nil {
		return err
	}
	fsys, err := migrations.For("notification")
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if err := postgres.Migrate(ctx, pool, fsys); err != nil {
		return err
	}
	client, err := queue.NewClient(ctx, cfg.sqs)
	if err != nil {
		return err
	}

	store := notification.NewStore(pool)
	svc := notification.NewService(store, notification.NewMailer(cfg.smtpAddr, cfg.mailFrom), log)
	verifier, err := auth.NewVerifier(cfg.auth, &http.Client{Timeout: 5 * time.Second}, log)
	if err != nil {
		return err
	}
	h := notification.NewHandler(log, svc, verifier.Authenticate, map[string]web.Check{
		"postgres": svc.Ready,
		"sqs": func(ctx context.Context) error {
			for _, name := range []string{cfg.invoiceQueue, cfg.emailQueue} {
				if _, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)}); err != nil {
					return fmt.Errorf("queue %s: %w", name, err)
				}
			}
			return nil
		},
	})

	// The workers stop when ctx is done; cancelling it on every way out of
	// run (including a failed listen) and waiting for them means run never
	// returns with a handler still in flight.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	opts := queue.Options{VisibilityTimeout: cfg.visibility, MaxReceiveCount: cfg.maxReceives}
	workers := []struct {
		name, queue string
		handle      notification.HandlerFunc
	}{
		{notification.ConsumerInvoice, cfg.invoiceQueue, svc.HandleInvoice},
		{notification.ConsumerEmail, cfg.emailQueue, svc.HandleEmail},
	}
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q, err := notification.EnsureQueue(ctx, client, w.queue, opts, log)
			if err != nil {
				return // ctx ended before SQS answered
			}
			c := notification.NewConsumer(client, notification.ConsumerConfig{
				Name:              w.name,
				QueueURL:          q.URL,
				Concurrency:       cfg.concurrency,
				VisibilityTimeout: cfg.visibility,
				Tracer:            tel.Tracer,
				Meter:             tel.MeterFor("orderflow/notification"),
			}, w.handle, log)
			log.InfoContext(ctx, "consuming", "consumer", w.name, "queue", q.URL, "dlq", q.DLQURL)
			_ = c.Run(ctx)
			log.InfoContext(ctx, "consumer stopped", "consumer", w.name, "poisoned", c.Poisoned())
		}()
	}

	wg.Go(func() {
		_ = tel.WatchQueues(ctx, client, []string{cfg.invoiceQueue, cfg.emailQueue}, 5*time.Second)
	})
	wg.Go(func() {
		retention.Run(ctx, time.Hour, log, retention.Job{Name: "processed_events",
			Keep: notification.ProcessedRetention, Delete: store.PurgeProcessed})
	})

	drain := web.NewDrainer(cfg.shutdownDrain, log)
	srv := web.NewServer(cfg.addr, drain.Handler(tel.Handler(web.ClientAddr(cfg.trustedProxies)(h))), log)
	err = web.Serve(drain.Context(ctx), srv, log, 10*time.Second)
	cancel()
	wg.Wait()
	log.InfoContext(context.WithoutCancel(ctx), "stopped")
	return err
}
