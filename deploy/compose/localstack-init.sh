#!/bin/bash
# LocalStack runs this once SQS is up (it is mounted in
# /etc/localstack/init/ready.d). It creates the queues order publishes to
# and notification consumes, each with a dead-letter queue. The attributes
# match what pkg/queue.Ensure would create, so a service that starts first
# and one that finds the queues already there see the same queues.
set -euo pipefail

max_receive_count=5
visibility_timeout=30
dlq_retention=$((14 * 24 * 3600))

for name in order-invoices order-emails; do
  dlq_url=$(awslocal sqs create-queue --queue-name "${name}-dlq" \
    --attributes "MessageRetentionPeriod=${dlq_retention}" \
    --query QueueUrl --output text)
  dlq_arn=$(awslocal sqs get-queue-attributes --queue-url "${dlq_url}" \
    --attribute-names QueueArn --query Attributes.QueueArn --output text)
  # RedrivePolicy is a JSON document inside the JSON attribute map.
  attributes=$(printf '{"VisibilityTimeout":"%s","ReceiveMessageWaitTimeSeconds":"20","RedrivePolicy":"{\\"deadLetterTargetArn\\":\\"%s\\",\\"maxReceiveCount\\":\\"%s\\"}"}' \
    "${visibility_timeout}" "${dlq_arn}" "${max_receive_count}")
  url=$(awslocal sqs create-queue --queue-name "${name}" --attributes "${attributes}" \
    --query QueueUrl --output text)
  echo "orderflow: queue ${url} (dead letters after ${max_receive_count} receives: ${dlq_url})"
done
