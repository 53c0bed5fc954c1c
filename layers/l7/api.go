package l7

import (
	"github.com/dblayers/dblayers/internal/apidoc"
)

// The API's description, served at /openapi.json, /docs and /redoc.
var (
	apiInfo = apidoc.Info{
		Title: "L7 · CQRS",
		Description: "Commands go to a write database with an outbox of events, in one transaction; a projector " +
			"applies the events to a separate read database, which serves the reads.",
	}
	opCreate = apidoc.WriteOp("Writes the command and publishes a RecordCreated event.",
		WriteResponse{Success: true, Key: "user:1", EventID: "42", Message: MsgCreated})
	opUpdate = apidoc.WriteOp("Writes the command and publishes a RecordUpdated event.",
		WriteResponse{Success: true, Key: "user:1", EventID: "43", Message: MsgUpdated})
	opRead = apidoc.ReadOp("Reads the projection in the read database (eventually consistent with the writes).",
		ReadResponse{ReadFields: apidoc.Found(), FromReadDB: true})
	opHealth = apidoc.HealthOp("Both databases must answer; a lagging projector makes the status degraded.",
		Health{Status: "healthy", Layer: Layer, WriteDB: "healthy", ReadDB: "healthy", Projector: "healthy"},
		"Service unhealthy: read database unavailable")
	opStats = apidoc.StatsOp("Events published, projected and parked, and the projection's lag.", Stats{Projector: "healthy"})
)
