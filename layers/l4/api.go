package l4

import (
	"github.com/dblayers/dblayers/internal/apidoc"
)

// The API's description, served at /openapi.json, /docs and /redoc.
var (
	apiInfo = apidoc.Info{
		Title: "L4 · sharding",
		Description: "Records are spread over several PostgreSQL shards by a hash of their key (SHARD_STRATEGY: modulo, the original MD5 mod N; ring, a consistent-hash ring; or jump, jump consistent hash), " +
			"behind a Redis cache; a shard that is down costs only its own keys.",
	}
	opWrite = apidoc.WriteOp("Upserts the record on the shard that owns its key.",
		WriteResponse{Success: true, Key: "user:1", ShardID: 1, Message: "Data written successfully to shard 1"})
	opRead = apidoc.ReadOp("Reads from Redis, else from the shard that owns the key.",
		ReadResponse{ReadFields: apidoc.Found(), ShardID: 1})
	opHealth = apidoc.HealthOp("Healthy when every shard answers, degraded while some do not; 503 when none does.",
		HealthResponse{Status: "healthy", Layer: Layer, Shards: map[string]string{"shard_0": "healthy", "shard_1": "healthy"}, Cache: "healthy"},
		"Service unhealthy: no shard available")
	opStats = apidoc.StatsOp("Records and pools per shard, and the cache's counters.", Stats{Strategy: "modulo", NumShards: 3})
)
