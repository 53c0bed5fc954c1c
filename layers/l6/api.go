package l6

import (
	"github.com/dblayers/dblayers/internal/apidoc"
	"github.com/dblayers/dblayers/internal/breaker"
)

// The API's description, served at /openapi.json, /docs and /redoc.
var (
	apiInfo = apidoc.Info{
		Title: "L6 · write buffering",
		Description: "Writes are acknowledged once they are durably queued in a Redis stream; workers apply them " +
			"to PostgreSQL in batches. A read sees the newest queued value.",
	}
	opWrite = apidoc.WriteOp("Queues the write; it is applied by a worker shortly after. 503 when the backlog is full.",
		WriteResponse{Success: true, Key: "user:1", Queued: true, Message: WriteMessage})
	opRead = apidoc.ReadOp("Reads the newest queued value, else the cache, else PostgreSQL.",
		ReadResponse{ReadFields: apidoc.Found(), Buffered: true})
	opHealth = apidoc.HealthOp("The database and the queue must answer; circuit_breakers says whether Redis is refused without being called.",
		HealthResponse{Status: "healthy", Layer: Layer, Database: "healthy", Cache: "healthy", Queue: "healthy", Workers: 2,
			CircuitBreakers: map[string]breaker.State{"Redis": breaker.Closed}},
		"Service unhealthy: queue unavailable")
	opStats = apidoc.StatsOp("The queue's progress and the cache's counters.", StatsResponse{})
)
