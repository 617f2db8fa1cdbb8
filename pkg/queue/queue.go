// Package queue connects to SQS (AWS, LocalStack or fauxqs) and creates the
// queues Orderflow uses, each with its dead-letter queue; it carries the
// trace context in messages and exports the queues' depth (WatchDepth).
package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// StartHint tells a person how to start the local SQS endpoint.
const StartHint = "start the local SQS endpoint with `make deps` (fauxqs on 127.0.0.1:4566)"

// Config selects the SQS endpoint. The fields come from the standard AWS
// variables (AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) plus
// AWS_ENDPOINT_URL_SQS for a local endpoint; left empty, the SDK's default
// chain applies, so the same binary runs against real AWS SQS.
type Config struct {
	Region          string
	Endpoint        string
	AccessKeyID     string
	SecretAccessKey string
}

// ReadConfig fills a Config from getenv.
func ReadConfig(getenv func(string) string) Config {
	return Config{
		Region:          getenv("AWS_REGION"),
		Endpoint:        getenv("AWS_ENDPOINT_URL_SQS"),
		AccessKeyID:     getenv("AWS_ACCESS_KEY_ID"),
		SecretAccessKey: getenv("AWS_SECRET_ACCESS_KEY"),
	}
}

// NewClient returns an SQS client for cfg; share it, it is safe for
// concurrent use.
func NewClient(ctx context.Context, cfg Config) (*sqs.Client, error) {
	var opts []func(*config.LoadOptions) error
	region := cfg.Region
	if region == "" && cfg.Endpoint != "" {
		region = "us-east-1"
	}
	if region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	if cfg.AccessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load aws config: %w", err)
	}
	return sqs.NewFromConfig(awsCfg, func(o *sqs.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	}), nil
}

// Queue is a queue and its dead-letter queue.
type Queue struct {
	Name   string
	URL    string
	DLQURL string
}

// Options are the attributes of a queue Ensure creates.
type Options struct {
	// VisibilityTimeout must be longer than a consumer needs for one message.
	VisibilityTimeout time.Duration
	// MaxReceiveCount is how often a message is received before SQS moves
	// it to the dead-letter queue.
	MaxReceiveCount int
}

// Ensure creates queue name and its dead-letter queue name+"-dlq" when they
// are missing (CreateQueue is idempotent for equal attributes) and returns
// their URLs. An existing queue keeps its attributes.
func Ensure(ctx context.Context, c *sqs.Client, name string, o Options) (Queue, error) {
	if o.VisibilityTimeout <= 0 {
		o.VisibilityTimeout = 30 * time.Second
	}
	if o.MaxReceiveCount <= 0 {
		o.MaxReceiveCount = 5
	}
	q := Queue{Name: name}
	dlq, err := getOrCreate(ctx, c, name+"-dlq", map[string]string{
		string(types.QueueAttributeNameMessageRetentionPeriod): strconv.Itoa(14 * 24 * 3600),
	})
	if err != nil {
		return q, err
	}
	q.DLQURL = dlq
	attrs, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(dlq),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return q, fmt.Errorf("get arn of %s-dlq: %w", name, err)
	}
	redrive := fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"%d"}`,
		attrs.Attributes[string(types.QueueAttributeNameQueueArn)], o.MaxReceiveCount)
	q.URL, err = getOrCreate(ctx, c, name, map[string]string{
		string(types.QueueAttributeNameVisibilityTimeout):             strconv.Itoa(int(o.VisibilityTimeout.Seconds())),
		string(types.QueueAttributeNameRedrivePolicy):                 redrive,
		string(types.QueueAttributeNameReceiveMessageWaitTimeSeconds): "20",
	})
	return q, err
}

func getOrCreate(ctx context.Context, c *sqs.Client, name string, attrs map[string]string) (string, error) {
	got, err := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err == nil {
		return aws.ToString(got.QueueUrl), nil
	}
	var missing *types.QueueDoesNotExist
	if !errors.As(err, &missing) {
		return "", fmt.Errorf("get url of queue %s: %w (%s)", name, err, StartHint)
	}
	created, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err != nil {
		return "", fmt.Errorf("create queue %s: %w", name, err)
	}
	return aws.ToString(created.QueueUrl), nil
}

// Depth returns the approximate number of visible and in-flight messages of
// the queue at url.
func Depth(ctx context.Context, c *sqs.Client, url string) (visible, inFlight int, err error) {
	out, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url),
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		return 0, 0, fmt.Errorf("queue attributes: %w", err)
	}
	visible, _ = strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessages)])
	inFlight, _ = strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	return visible, inFlight, nil
}
