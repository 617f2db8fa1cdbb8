package notification

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/pkg/events"
	"github.com/orderflow/orderflow/pkg/queue"
)

// HandlerFunc processes one decoded event. nil means done: the message is
// deleted. An error leaves the message on the queue to come back after its
// visibility timeout; an error wrapping ErrMalformed sends it to the
// dead-letter queue instead.
type HandlerFunc func(ctx context.Context, e events.Order) error

// ConsumerConfig tunes a Consumer.
type ConsumerConfig struct {
	// Name labels the consumer in logs ("invoice", "email").
	Name string
	// QueueURL is the queue to consume.
	QueueURL string
	// Concurrency bounds the handlers running at once (a bulkhead: a slow
	// SMTP server cannot pile up goroutines or database connections).
	Concurrency int
	// VisibilityTimeout is the queue's; each handler gets a deadline well
	// inside it, so a message is finished or abandoned before SQS hands it
	// to another consumer.
	VisibilityTimeout time.Duration
	// Tracer, when set, makes a consumer span per message, parented by the
	// producer span whose W3C context the message carries.
	Tracer trace.TracerProvider
	// Meter, when set, counts orderflow_messages_processed_total by
	// consumer and outcome (ok, failed, poisoned).
	Meter metric.Meter
}

const (
	// maxBatch is SQS's limit on MaxNumberOfMessages.
	maxBatch = 10
	// waitTimeSeconds is the longest long poll SQS allows: an idle
	// consumer makes three requests a minute instead of spinning.
	waitTimeSeconds = 20
	// poisonVisibility is how soon a poison message becomes visible again,
	// so it reaches maxReceiveCount and the dead-letter queue in seconds.
	poisonVisibility = 1
	// deleteTimeout bounds one DeleteMessageBatch after handlers succeeded.
	deleteTimeout = 5 * time.Second
	// deleteLinger is how long a finished message waits for others to
	// share its DeleteMessageBatch (at most maxBatch entries). Under load
	// that is one SQS call per ten messages instead of one per message;
	// idle, a message is deleted within this long of its commit.
	deleteLinger = 20 * time.Millisecond
	// receiveLinger is the pause after a receive that did not fill its
	// batch: the queue was drained, so the next receive waits for a few
	// more messages instead of fetching them one by one. Under load that is
	// one ReceiveMessage per several messages (each call costs the SQS
	// endpoint and the SDK far more than a message); an idle queue still
	// answers at once, through the 20 s long poll.
	receiveLinger = 25 * time.Millisecond
	// backoffBase and backoffMax shape the retry delay after a failed
	// receive (SQS down): doubling from the base, capped, with jitter.
	backoffBase = 200 * time.Millisecond
	backoffMax  = 15 * time.Second
)

// Consumer long-polls one SQS queue and runs a handler per message, deleting
// a message only after its handler succeeded. Handlers must be idempotent:
// SQS delivers at least once, and a consumer killed between the effect and
// the delete sees the message again.
type Consumer struct {
	client  *sqs.Client
	cfg     ConsumerConfig
	handle  HandlerFunc
	log     *slog.Logger
	timeout time.Duration
	poison  atomic.Int64
	queue   string
	trace   queue.Tracing
	done    metric.Int64Counter
}

// NewConsumer returns a Consumer of cfg.QueueURL that runs handle.
func NewConsumer(client *sqs.Client, cfg ConsumerConfig, handle HandlerFunc, log *slog.Logger) *Consumer {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 1
	}
	if cfg.VisibilityTimeout <= 0 {
		cfg.VisibilityTimeout = 30 * time.Second
	}
	if cfg.Meter == nil {
		cfg.Meter = noop.NewMeterProvider().Meter("")
	}
	done, _ := cfg.Meter.Int64Counter("orderflow.messages.processed",
		metric.WithDescription("Messages handled by a consumer, by outcome: ok (deleted), failed (left for redelivery), poisoned (left for the dead-letter queue; counted once)."))
	return &Consumer{
		client:  client,
		cfg:     cfg,
		handle:  handle,
		log:     log.With("consumer", cfg.Name),
		timeout: HandlerTimeout(cfg.VisibilityTimeout),
		queue:   path.Base(cfg.QueueURL),
		trace:   queue.NewTracing(cfg.Tracer),
		done:    done,
	}
}

// count adds one message with outcome to orderflow_messages_processed_total.
func (c *Consumer) count(ctx context.Context, outcome string) {
	c.done.Add(ctx, 1, metric.WithAttributes(attribute.String("consumer", c.cfg.Name),
		attribute.String("queue", c.queue), attribute.String("outcome", outcome)))
}

// HandlerTimeout is the deadline of one handler for a visibility timeout:
// three quarters of it, leaving the rest for the delete, so a handler that
// hangs is abandoned before the message becomes visible to another consumer.
func HandlerTimeout(visibility time.Duration) time.Duration {
	return visibility * 3 / 4
}

// Poisoned counts the poison messages seen: bodies events.Decode rejects
// and events a handler calls malformed. Each message is counted once, on its
// first receipt, however often it comes back before the dead-letter queue
// takes it.
func (c *Consumer) Poisoned() int64 { return c.poison.Load() }

// Run consumes until ctx is cancelled, then waits for the handlers in flight
// to finish (each within its own deadline) and returns nil. It never returns
// because SQS is unreachable: it backs off and tries again.
//
// A receive asks for at most as many messages as there are free handler
// slots, so no received message waits for a slot while its visibility
// timeout runs out.
func (c *Consumer) Run(ctx context.Context) error {
	slots := make(chan struct{}, c.cfg.Concurrency)
	// Handlers hand their finished messages to one deleter, which outlives
	// them: it stops once the last handler is done and its batch is sent.
	deletes := make(chan finished, c.cfg.Concurrency)
	deleterDone := make(chan struct{})
	go func() {
		defer close(deleterDone)
		c.deleteLoop(deletes)
	}()
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		close(deletes)
		<-deleterDone
	}()
	failures := 0
	for {
		n, ok := acquire(ctx, slots)
		if !ok {
			return nil
		}
		out, err := c.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:                    aws.String(c.cfg.QueueURL),
			MaxNumberOfMessages:         int32(n),
			WaitTimeSeconds:             waitTimeSeconds,
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount},
			MessageAttributeNames:       queue.TraceAttributeNames,
		})
		if err != nil {
			release(slots, n)
			if ctx.Err() != nil {
				return nil
			}
			failures++
			d := Backoff(failures)
			c.log.WarnContext(ctx, "receive failed; backing off", "error", err.Error(),
				"failures", failures, "retry_in", d.String())
			if !sleep(ctx, d) {
				return nil
			}
			continue
		}
		failures = 0
		release(slots, n-len(out.Messages))
		for _, m := range out.Messages {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				c.process(ctx, m, deletes)
			}()
		}
		if len(out.Messages) > 0 && len(out.Messages) < n && !sleep(ctx, receiveLinger) {
			return nil
		}
	}
}

// acquire blocks for one free slot, then takes up to maxBatch-1 more: the
// ones free now and, while other handlers are still busy, the ones that
// free up within receiveLinger. Without that wait a worker behind its
// queue would receive one message each time a handler finished; an idle
// one has every slot free and receives at once. It returns how many it
// took, or false when ctx ended.
func acquire(ctx context.Context, slots chan struct{}) (int, bool) {
	select {
	case slots <- struct{}{}:
	case <-ctx.Done():
		return 0, false
	}
	n := 1
	var linger *time.Timer
	for n < maxBatch && n < cap(slots) {
		select {
		case slots <- struct{}{}:
			n++
			continue
		default:
		}
		if linger == nil {
			linger = time.NewTimer(receiveLinger)
			defer linger.Stop()
		}
		select {
		case slots <- struct{}{}:
			n++
		case <-linger.C:
			return n, true
		case <-ctx.Done():
			release(slots, n)
			return 0, false
		}
	}
	return n, true
}

func release(slots chan struct{}, n int) {
	for range n {
		<-slots
	}
}

// process runs the handler for one message and, when it succeeded, hands
// the message to the deleter. The handler's context is detached from ctx's
// cancellation, so a shutdown lets it finish (commit and delete) instead of
// abandoning a half-done message, but it carries its own deadline shorter
// than the visibility timeout.
func (c *Consumer) process(ctx context.Context, m types.Message, deletes chan<- finished) {
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
	defer cancel()
	hctx, span := c.trace.StartProcess(hctx, c.queue, m)
	defer span.End()
	log := c.log.With("message_id", aws.ToString(m.MessageId))
	e, err := events.Decode([]byte(aws.ToString(m.Body)))
	if err == nil {
		log = log.With("event_id", e.ID, "order_id", e.OrderID, "type", e.Type)
		err = c.safeHandle(hctx, e)
		if err == nil {
			deletes <- finished{ctx: hctx, log: log, receipt: aws.ToString(m.ReceiptHandle)}
			c.count(hctx, "ok")
			return
		}
		span.SetStatus(codes.Error, err.Error())
		if !errors.Is(err, ErrMalformed) {
			log.WarnContext(hctx, "handler failed; the message will be redelivered", "error", err.Error())
			c.count(hctx, "failed")
			return
		}
	}
	span.SetStatus(codes.Error, "poison message")
	c.poisoned(hctx, log, m, err)
}

// safeHandle turns a panicking handler into an error, so one bad event
// cannot take the worker down; the message is retried like any failure.
func (c *Consumer) safeHandle(ctx context.Context, e events.Order) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panic: %v", r)
		}
	}()
	return c.handle(ctx, e)
}

// finished is a message whose handler succeeded, waiting for its delete.
type finished struct {
	ctx     context.Context // the handler's, for the log line's trace id
	log     *slog.Logger
	receipt string
}

// deleteLoop deletes finished messages in batches of up to maxBatch: a
// batch goes out when it is full or deleteLinger after its first message,
// and whatever is left when deletes is closed goes out before it returns.
// A message whose delete fails is redelivered after its visibility timeout
// and skipped by the idempotent handler.
func (c *Consumer) deleteLoop(deletes <-chan finished) {
	var batch []finished
	var linger <-chan time.Time
	for {
		select {
		case f, ok := <-deletes:
			if !ok {
				c.deleteBatch(batch)
				return
			}
			batch = append(batch, f)
			if len(batch) == 1 {
				linger = time.After(deleteLinger)
			}
			if len(batch) < maxBatch {
				continue
			}
		case <-linger:
		}
		c.deleteBatch(batch)
		batch, linger = batch[:0], nil
	}
}

func (c *Consumer) deleteBatch(batch []finished) {
	if len(batch) == 0 {
		return
	}
	entries := make([]types.DeleteMessageBatchRequestEntry, len(batch))
	for i, f := range batch {
		entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(f.receipt)}
	}
	// The effects are committed: delete even while shutting down.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(batch[0].ctx), deleteTimeout)
	defer cancel()
	out, err := c.client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{
		QueueUrl: aws.String(c.cfg.QueueURL),
		Entries:  entries,
	})
	if err != nil {
		for _, f := range batch {
			f.log.WarnContext(f.ctx, "delete failed; the message will be redelivered and skipped", "error", err.Error())
		}
		return
	}
	for _, fail := range out.Failed {
		if i, err := strconv.Atoi(aws.ToString(fail.Id)); err == nil && i < len(batch) {
			f := batch[i]
			f.log.WarnContext(f.ctx, "delete failed; the message will be redelivered and skipped",
				"error", aws.ToString(fail.Code)+": "+aws.ToString(fail.Message))
		}
	}
}

// poisoned leaves a message that can never be processed on the queue (a
// delete would lose the evidence) but makes it visible again almost at
// once, so SQS's redrive policy moves it to the dead-letter queue after
// maxReceiveCount receipts instead of after maxReceiveCount visibility
// timeouts.
func (c *Consumer) poisoned(ctx context.Context, log *slog.Logger, m types.Message, cause error) {
	receives, _ := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
	if receives <= 1 {
		c.poison.Add(1)
		c.count(ctx, "poisoned")
	}
	log.ErrorContext(ctx, "poison message; leaving it for the dead-letter queue",
		"error", cause.Error(), "receive_count", receives)
	_, err := c.client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl:          aws.String(c.cfg.QueueURL),
		ReceiptHandle:     m.ReceiptHandle,
		VisibilityTimeout: poisonVisibility,
	})
	if err != nil {
		log.WarnContext(ctx, "change visibility of poison message", "error", err.Error())
	}
}

// Backoff is the delay before retry number attempt (1, 2, ...) after a
// failed receive: exponential from 200ms, capped at 15s, with "equal
// jitter" (half fixed, half random) so replicas do not retry in lockstep
// and the delay never shrinks to nothing.
func Backoff(attempt int) time.Duration {
	attempt = max(attempt, 1)
	d := backoffMax
	if attempt < 20 {
		d = min(backoffBase<<(attempt-1), backoffMax)
	}
	half := d / 2
	return half + rand.N(half+1)
}

// EnsureQueue creates (or finds) the queue and its dead-letter queue,
// retrying with Backoff until SQS answers: a service that starts while SQS
// is down keeps serving reads and reports not ready, then starts consuming
// once SQS is back. It fails only when ctx ends.
func EnsureQueue(ctx context.Context, client *sqs.Client, name string, o queue.Options, log *slog.Logger) (queue.Queue, error) {
	for attempt := 1; ; attempt++ {
		q, err := queue.Ensure(ctx, client, name, o)
		if err == nil {
			return q, nil
		}
		if ctx.Err() != nil {
			return queue.Queue{}, ctx.Err()
		}
		d := Backoff(attempt)
		log.WarnContext(ctx, "ensure queue failed; retrying", "queue", name, "error", err.Error(),
			"attempt", attempt, "retry_in", d.String())
		if !sleep(ctx, d) {
			return queue.Queue{}, ctx.Err()
		}
	}
}

// sleep waits for d or until ctx ends, reporting whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
