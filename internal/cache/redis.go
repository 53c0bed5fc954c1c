// Package cache holds the caching parts the layers compose: Redis cache-aside with
// lease-guarded fills (L2 on), and the shared Redis client settings.
package cache

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// NewRedis returns a client for url with short timeouts and no retries, so that a Redis
// outage costs a request milliseconds, not seconds: callers fall back to the database.
func NewRedis(url string) (*redis.Client, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("parse redis URL: %w", err)
	}
	opt.DialTimeout = time.Second
	opt.ReadTimeout = 500 * time.Millisecond
	opt.WriteTimeout = 500 * time.Millisecond
	opt.MaxRetries = -1 // no retries: a failed cache call falls back, it does not wait
	opt.DisableIdentity = true
	return redis.NewClient(opt), nil
}

// Ping reports whether rdb answers within a short bound.
func Ping(ctx context.Context, rdb redis.UniversalClient) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return rdb.Ping(ctx).Err()
}
