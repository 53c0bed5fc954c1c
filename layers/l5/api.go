package l5

import (
	"github.com/dblayers/dblayers/internal/apidoc"
	"github.com/dblayers/dblayers/internal/cache"
	"github.com/dblayers/dblayers/internal/record"
)

// The API's description, served at /openapi.json, /docs and /redoc.
var (
	apiInfo = apidoc.Info{
		Title: "L5 · multi-tier cache",
		Description: "An in-process L1 cache over Redis (L2) over PostgreSQL (L3); a write invalidates both tiers, " +
			"in every instance (Redis pub/sub).",
	}
	opWrite = apidoc.WriteOp("Upserts the record in PostgreSQL and invalidates L1 (here and in other instances) and L2.",
		apidoc.WriteOK(msgWritten))
	opRead = apidoc.ReadOp("Reads from L1, else L2, else PostgreSQL; `cache_level` says which answered.",
		ReadResponse{ReadFields: apidoc.Found(), CacheLevel: cache.Level(record.FromMemory)})
	opHealth = apidoc.HealthOp("The database must answer; the caches may be unavailable.",
		map[string]string{"status": "healthy", "layer": Layer, "database": "healthy", "cache": "healthy"},
		"Service unhealthy: database unavailable")
	opClear = apidoc.Operation{Summary: "Clear the caches", Description: "Empties L1 in every instance and the records in L2.",
		OK: ClearResponse{Success: true, Message: msgCleared}}
	opStats = apidoc.StatsOp("Both tiers' sizes and hit rates.", Stats{L1Available: true})
)

// Messages the handlers answer with, which the examples show.
const (
	msgWritten = "Data written successfully"
	msgCleared = "All caches cleared"
)
