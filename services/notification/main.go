// Command notification runs Orderflow's notification service: the invoice
// and e-mail workers on their SQS queues, and the read API over what they
// produced.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/pkg/auth"
	"github.com/orderflow/orderflow/pkg/env"
	"github.com/orderflow/orderflow/pkg/queue"
	"github.com/orderflow/orderflow/pkg/retention"
	"github.com/orderflow/orderflow/pkg/startup"
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

// config is everything notification reads from its environment, read by
// readConfig and logged at start-up by LogValue.
type config struct {
	startup.Config
	smtpAddr     string
	mailFrom     string
	invoiceQueue string
	emailQueue   string
	concurrency  int
	visibility   time.Duration
	maxReceives  int
	sqs          queue.Config
	auth         auth.Config
	// trustedProxies may set X-Forwarded-For (TRUSTED_PROXIES).
	trustedProxies []netip.Prefix
	// shutdownDrain is how long the process keeps serving after SIGTERM
	// with /readyz failing, so a load balancer stops routing to it first
	// (SHUTDOWN_DRAIN; 0 by default, make dev REPLICAS>1 sets 3s).
	shutdownDrain time.Duration
}

// readConfig reads the environment, then the flags in args (local
// overrides), and reports every bad setting at once.
func readConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	r := env.New(getenv)
	c := config{
		Config: startup.Config{
			Service:     "notification",
			Database:    "notifications",
			Addr:        r.String("NOTIFICATION_ADDR", ":8083"),
			DatabaseURL: r.String("NOTIFICATION_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/notifications?sslmode=disable"),
			DBMaxConns:  r.Int("NOTIFICATION_DB_MAX_CONNS", 20),
			LogLevel:    r.String("LOG_LEVEL", "info"),
		},
		smtpAddr:      r.String("NOTIFICATION_SMTP_ADDR", "127.0.0.1:1025"),
		mailFrom:      r.String("NOTIFICATION_MAIL_FROM", "orders@orderflow.local"),
		invoiceQueue:  r.String("NOTIFICATION_INVOICE_QUEUE", "order-invoices"),
		emailQueue:    r.String("NOTIFICATION_EMAIL_QUEUE", "order-emails"),
		concurrency:   r.Int("NOTIFICATION_CONCURRENCY", 4),
		visibility:    r.Duration("NOTIFICATION_VISIBILITY_TIMEOUT", 30*time.Second),
		maxReceives:   r.Int("NOTIFICATION_MAX_RECEIVES", 5),
		sqs:           queue.ReadConfig(getenv),
		shutdownDrain: r.Duration("SHUTDOWN_DRAIN", 0),
	}
	var authErr, proxyErr, telErr error
	c.auth, authErr = auth.ReadConfig(getenv)
	c.trustedProxies, proxyErr = web.ParsePrefixes(r.String("TRUSTED_PROXIES", ""))
	c.Telemetry, telErr = telemetry.ReadConfig("notification", getenv)
	errs := append([]error{r.Err(), authErr, proxyErr, telErr}, c.validate()...)
	if err := errors.Join(append(errs, c.ParseFlags(args, stderr))...); err != nil {
		return config{}, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

// validate reports every setting out of range.
func (c config) validate() []error {
	var errs []error
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
	return errs
}

// LogValue is the configuration as the start-up log shows it: URLs without
// their passwords.
func (c config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("addr", c.Addr), slog.String("database_url", env.RedactURL(c.DatabaseURL)),
		slog.Int("db_max_conns", c.DBMaxConns),
		slog.String("smtp_addr", c.smtpAddr), slog.String("mail_from", c.mailFrom),
		slog.String("invoice_queue", c.invoiceQueue), slog.String("email_queue", c.emailQueue),
		slog.Int("concurrency", c.concurrency), slog.String("visibility_timeout", c.visibility.String()),
		slog.Int("max_receives", c.maxReceives),
		slog.String("sqs_endpoint", c.sqs.Endpoint), slog.String("sqs_region", c.sqs.Region),
		slog.String("auth_issuer", c.auth.Issuer), slog.String("auth_audience", c.auth.Audience),
		slog.String("auth_cache_ttl", c.auth.CacheTTL.String()),
		slog.String("trusted_proxies", fmt.Sprint(c.trustedProxies)),
		slog.String("shutdown_drain", c.shutdownDrain.String()), slog.String("log_level", c.LogLevel),
		slog.String("otel_endpoint", c.Telemetry.Endpoint))
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	cfg, err := readConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	p, err := startup.Start(ctx, stdout, cfg.Config, cfg, migrations.For)
	if err != nil {
		return err
	}
	defer p.Close(ctx)
	log, tel, pool := p.Log, p.Tel, p.Pool
	client, err := queue.NewClient(ctx, cfg.sqs)
	if err != nil {
		return err
	}

	store := notification.NewStore(pool)
	mailer := notification.NewMailer(cfg.smtpAddr, cfg.mailFrom)
	defer mailer.Close()
	svc := notification.NewService(store, mailer, log)
	verifier, err := auth.NewVerifier(cfg.auth, &http.Client{Timeout: 5 * time.Second}, log)
	if err != nil {
		return err
	}
	queues := []string{cfg.invoiceQueue, cfg.emailQueue}
	h := notification.NewHandler(log, svc, map[string]web.Check{"postgres": svc.Ready, "sqs": queuesExist(client, queues)},
		tel.MetricsHandler(), verifier.Authenticate)
	consume := func(name, queueName string, handle notification.HandlerFunc) func(context.Context) {
		return func(ctx context.Context) { runConsumer(ctx, cfg, tel, client, name, queueName, handle, log) }
	}
	return web.ListenAndServe(ctx, cfg.Addr, cfg.shutdownDrain, tel.Middleware(web.ClientAddr(cfg.trustedProxies)(h)), log,
		consume(notification.ConsumerInvoice, cfg.invoiceQueue, svc.HandleInvoice),
		consume(notification.ConsumerEmail, cfg.emailQueue, svc.HandleEmail),
		func(ctx context.Context) {
			_ = queue.WatchDepth(ctx, tel.MeterFor("orderflow/queue"), client, queues, 5*time.Second)
		},
		func(ctx context.Context) {
			retention.Run(ctx, time.Hour, log, retention.Job{Name: "processed_events",
				Keep: notification.ProcessedRetention, Delete: store.PurgeProcessed})
		})
}

// queuesExist is the readiness check of SQS: each of the queues the workers
// consume can be found.
func queuesExist(client *sqs.Client, queues []string) web.Check {
	return func(ctx context.Context) error {
		for _, name := range queues {
			if _, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)}); err != nil {
				return fmt.Errorf("queue %s: %w", name, err)
			}
		}
		return nil
	}
}

// runConsumer creates the worker's queue (with its dead-letter queue) and
// consumes it until ctx ends; a message in flight is finished first.
func runConsumer(ctx context.Context, cfg config, tel *telemetry.Telemetry, client *sqs.Client, name, queueName string, handle notification.HandlerFunc, log *slog.Logger) {
	opts := queue.Options{VisibilityTimeout: cfg.visibility, MaxReceiveCount: cfg.maxReceives}
	q, err := notification.EnsureQueue(ctx, client, queueName, opts, log)
	if err != nil {
		return // ctx ended before SQS answered
	}
	c := notification.NewConsumer(client, notification.ConsumerConfig{
		Name:              name,
		QueueURL:          q.URL,
		Concurrency:       cfg.concurrency,
		VisibilityTimeout: cfg.visibility,
		Tracer:            tel.Tracer,
		Meter:             tel.MeterFor("orderflow/notification"),
	}, handle, log)
	log.InfoContext(ctx, "consuming", "consumer", name, "queue", q.URL, "dlq", q.DLQURL)
	_ = c.Run(ctx)
	log.InfoContext(context.WithoutCancel(ctx), "consumer stopped", "consumer", name, "poisoned", c.Poisoned())
}
