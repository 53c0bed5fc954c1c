package l3

import (
	"github.com/dblayers/dblayers/internal/apidoc"
	"github.com/dblayers/dblayers/internal/httpapi"
)

// The API's description, served at /openapi.json, /docs and /redoc.
var (
	apiInfo = apidoc.Info{
		Title: "L3 · read replicas",
		Description: "Writes go to the primary PostgreSQL; reads are balanced over streaming replicas " +
			"(a client reads its own recent writes from the primary), behind L2's Redis cache.",
	}
	opWrite = apidoc.WriteOp("Upserts the record on the primary, then invalidates its cache entry.",
		httpapi.WriteResponse{Success: true, Key: "user:1", Message: WriteMessage})
	opRead = apidoc.ReadOp("Reads from Redis, else from a healthy replica, else from the primary.",
		ReadResponse{ReadFields: apidoc.Found(), FromReplica: true})
	opHealth = apidoc.HealthOp("The primary must answer; replicas and cache may be degraded.",
		HealthResponse{Status: "healthy", Layer: Layer, Primary: "healthy", Replica: "healthy",
			Replicas: map[string]string{"replica-1": "healthy", "replica-2": "healthy"}, Cache: "healthy"},
		"Service unhealthy: primary unavailable")
	opStats = apidoc.StatsOp("Cache counters and the pools' sizes.", StatsResponse{})
)
