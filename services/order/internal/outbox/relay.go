package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/pkg/queue"
)

// batchSize is SQS's limit for SendMessageBatch.
const batchSize = 10

// Relay publishes unsent outbox rows to every configured queue and marks them
// sent. Rows are claimed with FOR UPDATE SKIP LOCKED, so relays on several
// replicas share the work without publishing a row twice in the normal case.
// Delivery is still at-least-once (a crash after SQS accepted a batch and
// before the commit republishes it), so consumers deduplicate by event id.
type Relay struct {
	pool   *pgxpool.Pool
	client *sqs.Client
	names  []string
	log    *slog.Logger
	trace  queue.Tracing

	mu   sync.Mutex
	urls []string // resolved lazily: SQS may be down when the service starts
}

// NewRelay returns a relay publishing to the queues named queueNames; they
// are created, with their dead-letter queues, when missing.
func NewRelay(pool *pgxpool.Pool, client *sqs.Client, queueNames []string, log *slog.Logger, opts ...Option) *Relay {
	r := &Relay{pool: pool, client: client, names: queueNames, log: log}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Option configures a Relay.
type Option func(*Relay)

// WithTracerProvider makes the relay trace each publish: a producer span per
// message, child of the request that wrote the event (its trace context is
// stored in the row), whose context travels in the message attributes.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(r *Relay) { r.trace = queue.NewTracing(tp) }
}

// Run publishes until ctx is done: at once while there is a backlog, every
// interval when idle, and with capped exponential backoff plus jitter while
// SQS or Postgres fail. Failures are logged once per transition, not per try.
func (r *Relay) Run(ctx context.Context, interval time.Duration) {
	const maxBackoff = 5 * time.Second
	backoff := interval
	failing := false
	for {
		n, err := r.PublishBatch(ctx)
		wait := interval
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if !failing {
				r.log.WarnContext(ctx, "outbox relay failing; events wait in the outbox", "error", err)
				failing = true
			}
			backoff = min(backoff*2, maxBackoff)
			wait = backoff/2 + rand.N(backoff/2+1)
		default:
			if failing {
				r.log.InfoContext(ctx, "outbox relay recovered")
				failing = false
			}
			backoff = interval
			if n == batchSize {
				wait = 0
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// Check reports whether SQS answers, for readiness.
func (r *Relay) Check(ctx context.Context) error {
	_, err := r.queueURLs(ctx)
	return err
}

func (r *Relay) queueURLs(ctx context.Context) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.urls != nil {
		return r.urls, nil
	}
	urls := make([]string, 0, len(r.names))
	for _, name := range r.names {
		q, err := queue.Ensure(ctx, r.client, name, queue.Options{})
		if err != nil {
			return nil, err
		}
		urls = append(urls, q.URL)
	}
	r.urls = urls
	return urls, nil
}

func (r *Relay) forgetURLs() {
	r.mu.Lock()
	r.urls = nil
	r.mu.Unlock()
}

type row struct {
	id           int64
	eventID      string
	eventType    string
	payload      []byte
	traceContext map[string]string
}

// PublishBatch publishes up to one batch of unsent rows and returns how many
// were marked sent.
func (r *Relay) PublishBatch(ctx context.Context) (int, error) {
	urls, err := r.queueURLs(ctx)
	if err != nil {
		return 0, err
	}
	sent := 0
	err = pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		const q = `
SELECT id, event_id::text, event_type, payload, trace_context
FROM outbox
WHERE sent_at IS NULL
ORDER BY id
LIMIT $1
FOR UPDATE SKIP LOCKED`
		rows, err := tx.Query(ctx, q, batchSize)
		if err != nil {
			return fmt.Errorf("select unsent: %w", err)
		}
		batch, err := pgx.CollectRows(rows, func(rw pgx.CollectableRow) (row, error) {
			var x row
			err := rw.Scan(&x.id, &x.eventID, &x.eventType, &x.payload, &x.traceContext)
			return x, err
		})
		if err != nil {
			return fmt.Errorf("read unsent: %w", err)
		}
		if len(batch) == 0 {
			return nil
		}
		ok, failed := r.send(ctx, r.names, urls, batch)
		const markSent = `UPDATE outbox SET sent_at = now(), attempts = attempts + 1 WHERE id = ANY($1)`
		if _, err := tx.Exec(ctx, markSent, ok); err != nil {
			return fmt.Errorf("mark sent: %w", err)
		}
		for id, msg := range failed {
			const markFailed = `UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1`
			if _, err := tx.Exec(ctx, markFailed, id, msg); err != nil {
				return fmt.Errorf("mark failed: %w", err)
			}
		}
		sent = len(ok)
		if len(ok) == 0 && len(failed) > 0 {
			// Resolve the queues again next time: an SQS endpoint that
			// restarted empty (an emulator) needs them re-created.
			r.forgetURLs()
			// Every row failed; the first one's error stands for them all.
			return fmt.Errorf("publish: %s", failed[batch[0].id])
		}
		return nil
	})
	return sent, err
}

// send publishes batch to every queue and returns the ids that reached all
// of them, and an error message for the others.
func (r *Relay) send(ctx context.Context, names, urls []string, batch []row) (ok []int64, failed map[int64]string) {
	failed = map[int64]string{}
	for i, url := range urls {
		entries := make([]types.SendMessageBatchRequestEntry, 0, len(batch))
		creates := make(map[string]trace.Span, len(batch))
		links := make([]trace.SpanContext, 0, len(batch))
		for _, x := range batch {
			attrs := map[string]types.MessageAttributeValue{
				"event_id":   {DataType: aws.String("String"), StringValue: aws.String(x.eventID)},
				"event_type": {DataType: aws.String("String"), StringValue: aws.String(x.eventType)},
			}
			// The message continues the trace of the request that wrote
			// the event, not the relay's loop.
			_, span := r.trace.StartCreate(queue.ContextFromCarrier(context.WithoutCancel(ctx), x.traceContext), names[i], attrs)
			id := strconv.FormatInt(x.id, 10)
			creates[id] = span
			links = append(links, span.SpanContext())
			entries = append(entries, types.SendMessageBatchRequestEntry{
				Id:                aws.String(id),
				MessageBody:       aws.String(string(x.payload)),
				MessageAttributes: attrs,
			})
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		sctx, send := r.trace.StartSend(sctx, names[i], len(entries), links)
		out, err := r.client.SendMessageBatch(sctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
		cancel()
		if err != nil {
			send.SetStatus(codes.Error, err.Error())
			for _, x := range batch {
				failed[x.id] = err.Error()
				creates[strconv.FormatInt(x.id, 10)].SetStatus(codes.Error, err.Error())
			}
		} else {
			for _, f := range out.Failed {
				id, _ := strconv.ParseInt(aws.ToString(f.Id), 10, 64)
				failed[id] = aws.ToString(f.Code) + ": " + aws.ToString(f.Message)
				if span, ok := creates[aws.ToString(f.Id)]; ok {
					span.SetStatus(codes.Error, failed[id])
				}
			}
			for _, m := range out.Successful {
				if span, ok := creates[aws.ToString(m.Id)]; ok {
					span.SetAttributes(semconv.MessagingMessageID(aws.ToString(m.MessageId)))
				}
			}
		}
		send.End()
		for _, span := range creates {
			span.End()
		}
	}
	for _, x := range batch {
		if _, bad := failed[x.id]; !bad {
			ok = append(ok, x.id)
		}
	}
	return ok, failed
}
