package l1

import (
	"github.com/dblayers/dblayers/internal/apidoc"
	"github.com/dblayers/dblayers/internal/pgstore"
)

// Messages the handlers answer with, which the examples show.
const (
	msgWritten   = "Data written successfully"
	msgUnhealthy = "Database unhealthy"
)

// The API's description, served at /openapi.json, /docs and /redoc.
var (
	apiInfo = apidoc.Info{
		Title:       "L1 · connection pool",
		Description: "L0's PostgreSQL behind a pgx connection pool: connections are reused, acquiring one is bounded.",
	}
	opWrite  = apidoc.WriteOp("Upserts the record through a pooled connection.", apidoc.WriteOK(msgWritten))
	opRead   = apidoc.ReadOp("Reads the record through a pooled connection.", apidoc.Found())
	opHealth = apidoc.HealthOp("Pings the database through the pool.", map[string]string{"status": "healthy", "layer": Layer}, msgUnhealthy)
	opStats  = apidoc.StatsOp("The pool's live numbers (also at /pool-stats, the original's name).", pgstore.PoolStats{})
)
