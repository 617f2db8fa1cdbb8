package queue

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// TraceAttributeNames are the SQS message attributes that carry the W3C
// trace context; a consumer asks ReceiveMessage for them.
var TraceAttributeNames = []string{"traceparent", "tracestate"}

// w3c is the propagation format of the trace context carried in messages
// and stored in the outbox: fixed, because rows written by one version are
// read by the next.
var w3c = propagation.TraceContext{}

// TraceCarrier returns the W3C trace context of ctx ("traceparent" and, when
// set, "tracestate"), or nil when ctx carries no sampled-or-not span. The
// outbox stores it with an event, so the relay can continue the order's
// trace long after the request is gone.
func TraceCarrier(ctx context.Context) map[string]string {
	c := propagation.MapCarrier{}
	w3c.Inject(ctx, c)
	if len(c) == 0 {
		return nil
	}
	return c
}

// ContextFromCarrier returns ctx with the remote span context of carrier
// (as TraceCarrier produced it) as parent.
func ContextFromCarrier(ctx context.Context, carrier map[string]string) context.Context {
	if len(carrier) == 0 {
		return ctx
	}
	return w3c.Extract(ctx, propagation.MapCarrier(carrier))
}

// attrCarrier adapts SQS message attributes to a TextMapCarrier.
type attrCarrier map[string]types.MessageAttributeValue

func (c attrCarrier) Get(key string) string {
	v, ok := c[key]
	if !ok {
		return ""
	}
	return aws.ToString(v.StringValue)
}

func (c attrCarrier) Set(key, value string) {
	c[key] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(value)}
}

func (c attrCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// Tracing makes the spans of SQS messaging the way the OpenTelemetry
// messaging conventions describe them: a PRODUCER "create" span per message,
// whose context travels in the message attributes; a CLIENT "send" span per
// SendMessageBatch, linked to the create spans of its messages (a batch mixes
// messages of many traces, so it can parent none of them); and a CONSUMER
// "process" span per message, parented by the create span, so one order's
// trace runs from the HTTP request through the queue into the worker. The
// zero Tracing makes no spans but still propagates the context.
type Tracing struct {
	tracer trace.Tracer
}

// NewTracing returns a Tracing whose spans come from tp (nil: none).
func NewTracing(tp trace.TracerProvider) Tracing {
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	return Tracing{tracer: tp.Tracer("github.com/orderflow/orderflow/pkg/queue")}
}

func (t Tracing) start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if t.tracer == nil {
		return ctx, trace.SpanFromContext(ctx)
	}
	return t.tracer.Start(ctx, name, opts...)
}

// StartCreate starts the producer span of one message for queue, as a child
// of ctx, and writes its trace context into attrs (the message's attributes,
// which must not be nil). SQS allows ten attributes per message; this uses
// at most two.
func (t Tracing) StartCreate(ctx context.Context, queue string, attrs map[string]types.MessageAttributeValue) (context.Context, trace.Span) {
	ctx, span := t.start(ctx, "create "+queue, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
		semconv.MessagingSystemAWSSQS, semconv.MessagingOperationTypeCreate,
		semconv.MessagingOperationName("create"), semconv.MessagingDestinationName(queue)))
	w3c.Inject(ctx, attrCarrier(attrs))
	return ctx, span
}

// StartSend starts the client span of one batch publish of n messages to
// queue, linked to the create spans of its messages.
func (t Tracing) StartSend(ctx context.Context, queue string, n int, creates []trace.SpanContext) (context.Context, trace.Span) {
	links := make([]trace.Link, 0, len(creates))
	for _, sc := range creates {
		if sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	return t.start(ctx, "send "+queue, trace.WithSpanKind(trace.SpanKindClient), trace.WithLinks(links...),
		trace.WithAttributes(semconv.MessagingSystemAWSSQS, semconv.MessagingOperationTypeSend,
			semconv.MessagingOperationName("send"), semconv.MessagingDestinationName(queue),
			semconv.MessagingBatchMessageCount(n)))
}

// StartProcess starts the consumer span of processing message m from queue,
// parented by the create span whose context m carries (a new trace when it
// carries none), and returns the context the handler must run under.
func (t Tracing) StartProcess(ctx context.Context, queue string, m types.Message) (context.Context, trace.Span) {
	ctx = w3c.Extract(ctx, attrCarrier(m.MessageAttributes))
	attrs := []attribute.KeyValue{semconv.MessagingSystemAWSSQS, semconv.MessagingOperationTypeProcess,
		semconv.MessagingOperationName("process"), semconv.MessagingDestinationName(queue),
		semconv.MessagingMessageID(aws.ToString(m.MessageId))}
	if m.Body != nil {
		attrs = append(attrs, semconv.MessagingMessageBodySize(len(*m.Body)))
	}
	return t.start(ctx, "process "+queue, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
}
