package queue_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/pkg/queue"
)

// TestTracing_OneTraceThroughTheQueue follows a message the way the outbox
// does: the request's context is stored as a carrier, the relay publishes
// under it, and the consumer's span is the child of the producer's.
func TestTracing_OneTraceThroughTheQueue(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tr := queue.NewTracing(tp)

	reqCtx, req := tp.Tracer("test").Start(context.Background(), "POST /v1/orders")
	stored := queue.TraceCarrier(reqCtx)
	req.End()
	if stored["traceparent"] == "" {
		t.Fatalf("TraceCarrier = %v; want a traceparent", stored)
	}

	attrs := map[string]types.MessageAttributeValue{}
	_, create := tr.StartCreate(queue.ContextFromCarrier(context.Background(), stored), "order-emails", attrs)
	create.End()
	_, send := tr.StartSend(context.Background(), "order-emails", 1, []trace.SpanContext{create.SpanContext()})
	send.End()
	if aws.ToString(attrs["traceparent"].StringValue) == "" || aws.ToString(attrs["traceparent"].DataType) != "String" {
		t.Fatalf("message attributes = %v; want a String traceparent", attrs)
	}

	_, process := tr.StartProcess(context.Background(), "order-emails", types.Message{
		MessageId: aws.String("m-1"), Body: aws.String("{}"), MessageAttributes: attrs,
	})
	process.End()

	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		spans[s.Name()] = s
	}
	reqSpan, c, s, p := spans["POST /v1/orders"], spans["create order-emails"], spans["send order-emails"], spans["process order-emails"]
	if c == nil || s == nil || p == nil {
		t.Fatalf("spans = %v; want create, send and process", spans)
	}
	if c.Parent().SpanID() != reqSpan.SpanContext().SpanID() || c.SpanKind() != trace.SpanKindProducer {
		t.Errorf("create: parent %s kind %s; want the request %s, producer", c.Parent().SpanID(), c.SpanKind(), reqSpan.SpanContext().SpanID())
	}
	if p.Parent().SpanID() != c.SpanContext().SpanID() || p.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("process: parent %s kind %s; want the create span %s, consumer", p.Parent().SpanID(), p.SpanKind(), c.SpanContext().SpanID())
	}
	if p.SpanContext().TraceID() != reqSpan.SpanContext().TraceID() {
		t.Errorf("process trace %s; want the request's %s", p.SpanContext().TraceID(), reqSpan.SpanContext().TraceID())
	}
	if len(s.Links()) != 1 || s.Links()[0].SpanContext.SpanID() != c.SpanContext().SpanID() || s.Parent().IsValid() {
		t.Errorf("send: links %v parent %v; want a root linked to the create span", s.Links(), s.Parent())
	}
}

func TestTracing_ZeroValuePropagatesWithoutSpans(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("test").Start(context.Background(), "request")
	defer span.End()
	attrs := map[string]types.MessageAttributeValue{}
	var tr queue.Tracing
	_, create := tr.StartCreate(ctx, "q", attrs)
	create.End()
	got, _ := tr.StartProcess(context.Background(), "q", types.Message{MessageAttributes: attrs})
	if id := trace.SpanContextFromContext(got).TraceID(); id != span.SpanContext().TraceID() {
		t.Errorf("trace after the queue = %s; want %s", id, span.SpanContext().TraceID())
	}
	if queue.TraceCarrier(context.Background()) != nil {
		t.Errorf("TraceCarrier of an untraced context is not nil")
	}
}
