package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// WatchDepth polls the depth of each named queue and of its dead-letter
// queue (name+"-dlq") every interval until ctx is done, and exports it on m
// as orderflow_queue_messages{queue,state="visible"|"in_flight"}. It polls
// in the background instead of on scrape, so a slow or unreachable SQS
// never slows /metrics; a queue that cannot be read drops out of the
// metric instead of showing a stale depth. Queues are never created here.
// It returns nil when ctx ends, or at once when the gauge cannot be made.
func WatchDepth(ctx context.Context, m metric.Meter, client *sqs.Client, names []string, interval time.Duration) error {
	type depth struct{ visible, inFlight int64 }
	var (
		mu     sync.Mutex
		depths = map[string]depth{}
		urls   = map[string]string{}
	)
	_, err := m.Int64ObservableGauge("orderflow.queue.messages",
		metric.WithDescription("Approximate messages in an SQS queue (and its dead-letter queue), by state."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			mu.Lock()
			defer mu.Unlock()
			for name, d := range depths {
				o.Observe(d.visible, metric.WithAttributes(attribute.String("queue", name), attribute.String("state", "visible")))
				o.Observe(d.inFlight, metric.WithAttributes(attribute.String("queue", name), attribute.String("state", "in_flight")))
			}
			return nil
		}))
	if err != nil {
		return fmt.Errorf("queue depth metric: %w", err)
	}
	var all []string
	for _, n := range names {
		all = append(all, n, n+"-dlq")
	}
	poll := func() {
		for _, name := range all {
			pctx, cancel := context.WithTimeout(ctx, interval)
			url, ok := urls[name]
			if !ok {
				out, err := client.GetQueueUrl(pctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
				if err == nil {
					url = aws.ToString(out.QueueUrl)
					urls[name] = url
				}
			}
			var d depth
			var err error = errNoURL
			if url != "" {
				var v, f int
				v, f, err = Depth(pctx, client, url)
				d = depth{int64(v), int64(f)}
			}
			cancel()
			mu.Lock()
			if err != nil {
				delete(depths, name)
				delete(urls, name) // an emulator that restarted has new URLs
			} else {
				depths[name] = d
			}
			mu.Unlock()
		}
	}
	for {
		poll()
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// errNoURL marks a queue whose URL could not be looked up this round.
var errNoURL = errors.New("queue url unknown")
