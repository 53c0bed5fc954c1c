package l9

import (
	"net/http"

	"github.com/dblayers/dblayers/internal/apidoc"
	"github.com/dblayers/dblayers/internal/geo"
)

// The API's description, served at /openapi.json, /docs and /redoc.
var (
	apiInfo = apidoc.Info{
		Title: "L9 · multi-region",
		Description: "Three regions, each with its own PostgreSQL and Redis. A request is served in its home region " +
			"(the X-Region header, else the body's region, else us-east); writes replicate asynchronously to the " +
			"other regions, and reads fail over to a healthy region.",
	}
	regionParam = apidoc.Param{Name: RegionHeader, Example: "eu-west",
		Description: "The home region: us-east, eu-west or asia-pac (default us-east)."}
	badRegion = apidoc.Answer{Status: http.StatusBadRequest,
		Detail: `Invalid region "mars" in X-Region header: valid regions are us-east, eu-west, asia-pac`}
	opWrite = apidoc.Operation{
		Summary:     "Write a record",
		Description: "Writes in the home region and queues the write for the other regions, in one transaction.",
		Params:      []apidoc.Param{regionParam},
		Body: &apidoc.Body{
			Schema: apidoc.Object(apidoc.Schema{"key": apidoc.KeySchema(), "value": apidoc.ValueSchema(),
				"region": apidoc.Schema{"type": []string{"string", "null"}, "description": "The home region, when no X-Region header names one."}},
				"key", "value"),
			Example: map[string]string{"key": "user:1", "value": "Alice"},
		},
		OK: WriteResponse{Success: true, Key: "user:1", PrimaryRegion: "US-EAST", ReplicatedTo: []string{"EU-WEST", "ASIA-PAC"},
			Message: "Written to US-EAST and replicating to 2 regions", Replication: "async", HLC: geo.HLC(7281865396531200000)},
		Errors: []apidoc.Answer{badRegion},
	}
	opRead = apidoc.Operation{
		Summary:     "Read a record",
		Description: "Reads in the home region (cache, then database), failing over to a healthy region when it is down. A missing key is 200 with success false.",
		Params:      []apidoc.Param{regionParam},
		OK:          ReadResponse{Success: true, Key: "user:1", Source: "cache", Region: "us-east", RequestedRegion: "us-east"},
		Errors:      []apidoc.Answer{badRegion},
	}
	opRegions = apidoc.Operation{Summary: "List the regions", Description: "Every region with whether its database and cache answer.",
		OK: map[string][]RegionInfo{"regions": {{Key: "us-east", Name: "US East", Healthy: true}}}}
	opHealth = apidoc.Operation{
		Summary:     "Health check",
		Description: "Healthy when every region answers, degraded while some do not; 503 when no region's database answers.",
		OK:          HealthResponse{Status: "healthy", Layer: Layer, TotalRegions: 3, HealthyRegions: 3},
		Errors:      []apidoc.Answer{{Status: http.StatusServiceUnavailable, Body: HealthResponse{Status: "unhealthy", Layer: Layer, TotalRegions: 3}}},
	}
	opStats = apidoc.StatsOp("Per region records and replication progress.", geo.Stats{})
)
