package l2

import (
	"github.com/dblayers/dblayers/internal/apidoc"
	"github.com/dblayers/dblayers/internal/cache"
)

// Messages the handlers answer with, which the examples show.
const (
	msgWritten   = "Data written successfully"
	msgUnhealthy = "Service unhealthy: database unavailable"
)

// The API's description, served at /openapi.json, /docs and /redoc.
var (
	apiInfo = apidoc.Info{
		Title: "L2 · read cache",
		Description: "A Redis cache-aside in front of L1's pooled PostgreSQL: reads are served from Redis when " +
			"they can be, a write invalidates the key, and without Redis reads go to the database.",
	}
	opWrite = apidoc.WriteOp("Upserts the record in PostgreSQL, then invalidates its cache entry.", apidoc.WriteOK(msgWritten))
	opRead  = apidoc.ReadOp("Reads from Redis, else from PostgreSQL (filling the cache); `from_cache` says which.",
		ReadResponse{ReadFields: apidoc.Found(), FromCache: true})
	opHealth = apidoc.HealthOp("The database must answer; the cache may be unavailable (reads then go to the database).",
		map[string]string{"status": "healthy", "layer": Layer, "database": "healthy", "cache": "healthy"}, msgUnhealthy)
	opStats = apidoc.StatsOp("Cache hits, misses and keys.", cache.Stats{})
)
