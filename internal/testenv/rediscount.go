package testenv

import (
	"context"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// RedisCounter counts what a Redis client sends: commands, and round trips (a pipeline is
// one round trip of many commands). Tests use it to prove how many times a path asks
// Redis, where a timing would only hint at it.
type RedisCounter struct{ commands, roundTrips atomic.Int64 }

// CountRedis starts counting rdb's commands and round trips.
func CountRedis(rdb redis.UniversalClient) *RedisCounter {
	c := &RedisCounter{}
	rdb.AddHook(c)
	return c
}

// Commands is the number of commands sent so far.
func (c *RedisCounter) Commands() int64 { return c.commands.Load() }

// RoundTrips is the number of round trips made so far.
func (c *RedisCounter) RoundTrips() int64 { return c.roundTrips.Load() }

// DialHook implements redis.Hook.
func (c *RedisCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook implements redis.Hook.
func (c *RedisCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.commands.Add(1)
		c.roundTrips.Add(1)
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook implements redis.Hook.
func (c *RedisCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.commands.Add(int64(len(cmds)))
		c.roundTrips.Add(1)
		return next(ctx, cmds)
	}
}
