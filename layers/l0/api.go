package l0

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
		Title: "L0 · single database",
		Description: "One PostgreSQL, no pool, no cache: every request opens a new connection, " +
			"runs one statement and closes it.",
	}
	opWrite = apidoc.WriteOp("Upserts the record: created_at is kept, updated_at set to now.",
		apidoc.WriteOK(msgWritten))
	opRead   = apidoc.ReadOp("Reads the record from the database.", apidoc.Found())
	opHealth = apidoc.HealthOp("Opens a connection and pings the database.",
		map[string]string{"status": "healthy", "layer": Layer}, msgUnhealthy)
	opStats = apidoc.StatsOp("How many connections this process has opened (one per request), "+
		"how many are open now (at most max_open, DB_MAX_OPEN_CONNECTIONS) and how many requests "+
		"wait for a slot.",
		pgstore.DirectStats{Opened: 42, Open: 3, MaxOpen: 50})
)
