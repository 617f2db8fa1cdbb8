// Package redisconn opens the one go-redis client a service process uses,
// with the settings that keep a slow or stopped Redis from stalling requests.
package redisconn

import (
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Open returns a client for url (redis:// or rediss:// for TLS). The client
// is a pool and safe for concurrent use; share it. poolSize <= 0 keeps
// go-redis's default (10 per CPU). No connection is made until first use:
// Redis is an optimisation here (cache, rate limits), so a service starts
// and serves without it.
func Open(url string, poolSize int) (*redis.Client, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	// Honour request deadlines; go-redis ignores them by default.
	opts.ContextTimeoutEnabled = true
	opts.DialTimeout = 500 * time.Millisecond
	opts.ReadTimeout = 250 * time.Millisecond
	opts.WriteTimeout = 250 * time.Millisecond
	if poolSize > 0 {
		opts.PoolSize = poolSize
	}
	opts.MaxRetries = 1
	// go-redis dials 5 times with 100 ms pauses by default: with Redis down
	// that would hold every fail-open request for half a second.
	opts.DialerRetries = 1
	opts.DialerRetryTimeout = 10 * time.Millisecond
	return redis.NewClient(opts), nil
}
