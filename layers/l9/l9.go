// Package l9 is layer 9, global distribution: three regions, each with its own PostgreSQL
// and Redis, requests routed to a home region by X-Region, writes committed in their home
// region and replicated asynchronously (and completely) to the others, conflicts settled by
// last-writer-wins on a hybrid logical clock, and reads that fail over to the next healthy
// region. The parts are in internal/geo; see README.md for why the regions converge.
package l9

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dblayers/dblayers/internal/apidoc"
	"github.com/dblayers/dblayers/internal/geo"
	"github.com/dblayers/dblayers/internal/httpapi"
	"github.com/dblayers/dblayers/internal/pgstore"
)

// Layer is the health "layer" string.
const Layer = "9-global-distributed"

// Config is L9's environment. The region URLs, pool sizes, REPLICATION_ENABLED and
// CACHE_TTL are the original's; the rest is in geo.Config.
type Config struct {
	Server       httpapi.ServerConfig
	USEastDB     string        `env:"DB_US_EAST_URL" default:"postgresql://dbuser:dbpassword@localhost:5450/global_db"`
	USEastCache  string        `env:"CACHE_US_EAST_URL" default:"redis://localhost:6387"`
	EUWestDB     string        `env:"DB_EU_WEST_URL" default:"postgresql://dbuser:dbpassword@localhost:5451/global_db"`
	EUWestCache  string        `env:"CACHE_EU_WEST_URL" default:"redis://localhost:6388"`
	AsiaPacDB    string        `env:"DB_ASIA_PAC_URL" default:"postgresql://dbuser:dbpassword@localhost:5452/global_db"`
	AsiaPacCache string        `env:"CACHE_ASIA_PAC_URL" default:"redis://localhost:6389"`
	CacheTTL     time.Duration `env:"CACHE_TTL" default:"300s"` // lifetime of a cached record
	Pool         pgstore.PoolConfig
	Geo          geo.Config
	// How replication reaches each region's database, over connections of its own; "" is
	// the region's DB_…_URL (see geo.RegionSpec.ReplicationURL).
	USEastReplication  string `env:"DB_US_EAST_REPLICATION_URL"`
	EUWestReplication  string `env:"DB_EU_WEST_REPLICATION_URL"`
	AsiaPacReplication string `env:"DB_ASIA_PAC_REPLICATION_URL"`
}

// RegionHeader is the request header that names the caller's region.
const RegionHeader = "X-Region"

// Regions returns the three regions in the original's order; the first (us-east) is the
// region of requests that name none.
func (c Config) Regions() []geo.RegionSpec {
	return []geo.RegionSpec{
		{Key: geo.USEast, DatabaseURL: c.USEastDB, CacheURL: c.USEastCache, ReplicationURL: c.USEastReplication},
		{Key: geo.EUWest, DatabaseURL: c.EUWestDB, CacheURL: c.EUWestCache, ReplicationURL: c.EUWestReplication},
		{Key: geo.AsiaPac, DatabaseURL: c.AsiaPacDB, CacheURL: c.AsiaPacCache, ReplicationURL: c.AsiaPacReplication},
	}
}

// Service is a running L9.
type Service struct {
	geo     *geo.Router
	handler http.Handler
}

// New opens the three regions, creates their schemas (a region that is down is waited for
// up to DB_STARTUP_TIMEOUT, then joined when it comes up), starts replication and returns
// the service.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Service, error) {
	router, err := geo.Open(ctx, cfg.Regions(), geo.RegionOptions{Pool: cfg.Pool, CacheTTL: cfg.CacheTTL}, cfg.Geo, logger)
	if err != nil {
		return nil, err
	}
	s := &Service{geo: router}
	r := apidoc.NewRouter(httpapi.Options{Layer: Layer, Logger: logger, Limits: cfg.Server.Limits()}, apiInfo)
	r.Post("/write", httpapi.Handle(s.write), opWrite)
	r.Get("/read/{key}", httpapi.Handle(s.read), opRead)
	r.Get("/regions", httpapi.Handle(s.regions), opRegions)
	r.Get("/health", s.health, opHealth)
	r.Stats(httpapi.Handle(s.stats), opStats, "/stats")
	s.handler = r
	return s, nil
}

// Handler is the HTTP API.
func (s *Service) Handler() http.Handler { return s.handler }

// Close stops replication and closes every region's Redis and pool.
func (s *Service) Close() { s.geo.Close() }

// Geo is the geo-router behind the API.
func (s *Service) Geo() *geo.Router { return s.geo }

// route resolves the home region from the X-Region header, then (for writes) the body's
// region. A value that names no region is a 400 that lists the valid ones; the original
// silently used us-east.
func (s *Service) route(r *http.Request, bodyRegion string) (*geo.Region, error) {
	header := r.Header.Get(RegionHeader)
	reg, err := s.geo.Route(header, bodyRegion)
	var ue *geo.UnknownRegionError
	if errors.As(err, &ue) {
		where := RegionHeader + " header"
		if header == "" {
			where = "body field region"
		}
		return nil, httpapi.Errorf(http.StatusBadRequest, "Invalid region %q in %s: valid regions are %s",
			ue.Key, where, strings.Join(ue.Valid, ", "))
	}
	return reg, err
}

// WriteResponse is the answer of POST /write: the original's fields, then the write's
// version. replicated_to names the regions the write is being replicated to: it is queued
// for each of them in the same transaction as the write, and applied there shortly after
// the answer (see /stats for the progress).
type WriteResponse struct {
	Success       bool     `json:"success"`
	Key           string   `json:"key"`
	PrimaryRegion string   `json:"primary_region"`
	ReplicatedTo  []string `json:"replicated_to"`
	Message       string   `json:"message"`
	Replication   string   `json:"replication"` // "async" or "disabled"
	HLC           geo.HLC  `json:"hlc"`         // the write's hybrid logical clock reading
}

func (s *Service) write(r *http.Request) (any, error) {
	req, body, err := httpapi.DecodeWrite(r)
	if err != nil {
		return nil, err
	}
	bodyRegion, _ := body.OptionalString("region")
	if err := body.Err(); err != nil {
		return nil, err
	}
	home, err := s.route(r, bodyRegion)
	if err != nil {
		return nil, err
	}
	res, err := s.geo.Write(r.Context(), home, req.Key, req.Value)
	if err != nil {
		return nil, err
	}
	resp := WriteResponse{
		Success: true, Key: req.Key, PrimaryRegion: home.Name(), ReplicatedTo: []string{},
		Message: "Written to " + home.Name(), Replication: "disabled", HLC: res.Entry.HLC,
	}
	for _, reg := range res.ReplicatingTo {
		resp.ReplicatedTo = append(resp.ReplicatedTo, reg.Name())
	}
	if s.geo.Config().ReplicationEnabled {
		resp.Replication = "async"
		if n := len(resp.ReplicatedTo); n > 0 {
			resp.Message += " and replicating to " + plural(n, "region")
		}
	}
	return resp, nil
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// ReadResponse is the answer of GET /read/{key}: the original's fields, then where the
// answer came from. region is the answering region's name, with " (fallback)" when it is
// not the requested one; fallback says why ("not_found": the requested region does not
// have the key yet; "unavailable": it could not be read).
type ReadResponse struct {
	Success            bool     `json:"success"`
	Key                string   `json:"key"`
	Value              *string  `json:"value"`
	Source             string   `json:"source"` // "cache", "database" or "none"
	Region             string   `json:"region"`
	LatencyMs          *float64 `json:"latency_ms"` // time spent looking up, two decimals; null when not found
	Message            *string  `json:"message"`
	RequestedRegion    string   `json:"requested_region"`
	Fallback           *string  `json:"fallback"`
	UnavailableRegions []string `json:"unavailable_regions"`
	HLC                *geo.HLC `json:"hlc"`           // version of the value read
	OriginRegion       *string  `json:"origin_region"` // region where that version was written
}

// MsgNotFound is the original's message for a key found in no region.
const MsgNotFound = "Key not found in any region"

func (s *Service) read(r *http.Request) (any, error) {
	key, err := httpapi.PathKey(r)
	if err != nil {
		return nil, err
	}
	home, err := s.route(r, "")
	if err != nil {
		return nil, err
	}
	start := time.Now()
	res, err := s.geo.Read(r.Context(), home, key)
	if err != nil {
		return nil, err
	}
	resp := ReadResponse{Key: key, Source: "none", Region: home.Name(), RequestedRegion: home.Name(), UnavailableRegions: []string{}}
	for _, reg := range res.Unavailable {
		resp.UnavailableRegions = append(resp.UnavailableRegions, reg.Name())
	}
	if !res.Found {
		msg := MsgNotFound
		resp.Message = &msg
		return resp, nil
	}
	latency := math.Round(float64(time.Since(start).Microseconds())/10) / 100
	value, hlc, origin := res.Entry.Value, res.Entry.HLC, geo.Name(res.Entry.Origin)
	resp.Success, resp.Value, resp.LatencyMs, resp.HLC, resp.OriginRegion = true, &value, &latency, &hlc, &origin
	resp.Source = "database"
	if res.FromCache {
		resp.Source = "cache"
	}
	resp.Region = res.Region.Name()
	if res.Fallback != "" {
		resp.Region += " (fallback)"
		resp.Fallback = &res.Fallback
	}
	return resp, nil
}

// RegionInfo is one entry of /regions.
type RegionInfo struct {
	Key     string `json:"key"`
	Name    string `json:"name"`
	Healthy bool   `json:"healthy"`
}

func (s *Service) regions(r *http.Request) (any, error) {
	var out []RegionInfo
	for _, h := range s.geo.Check(r.Context()) {
		out = append(out, RegionInfo{Key: h.Region.Key(), Name: h.Region.Name(), Healthy: h.Healthy()})
	}
	return map[string]any{"regions": out}, nil
}

// HealthResponse is /health: the original's fields, with a status that tells the truth,
// and each region's database and cache. Its objects list the regions in their order.
type HealthResponse struct {
	Status         string  `json:"status"` // healthy, degraded or unhealthy
	Layer          string  `json:"layer"`
	Regions        ordered `json:"regions"` // region → database and cache both answer
	TotalRegions   int     `json:"total_regions"`
	HealthyRegions int     `json:"healthy_regions"`
	Components     ordered `json:"components"` // region → {"database", "cache"} → healthy|skipped|unavailable (geo.State)
}

// ordered is a JSON object that keeps its keys in the order given (Go maps sort them).
type ordered []field

type field struct {
	key   string
	value any
}

// MarshalJSON implements json.Marshaler.
func (o ordered) MarshalJSON() ([]byte, error) {
	buf := []byte{'{'}
	for i, f := range o {
		if i > 0 {
			buf = append(buf, ',')
		}
		k, err := json.Marshal(f.key)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(f.value)
		if err != nil {
			return nil, err
		}
		buf = append(append(append(buf, k...), ':'), v...)
	}
	return append(buf, '}'), nil
}

// health answers 200 "healthy" when every region's database and cache answer; 200
// "degraded" when something is down but at least one region's database answers (the
// service still serves: reads fail over, writes homed elsewhere succeed); 503 "unhealthy"
// when no region's database answers.
func (s *Service) health(w http.ResponseWriter, r *http.Request) {
	resp := HealthResponse{Layer: Layer, Regions: ordered{}, Components: ordered{}}
	databases := 0
	for _, h := range s.geo.Check(r.Context()) {
		key := h.Region.Key()
		resp.TotalRegions++
		resp.Regions = append(resp.Regions, field{key, h.Healthy()})
		resp.Components = append(resp.Components, field{key, ordered{{"database", h.DatabaseState()}, {"cache", geo.State(h.Cache)}}})
		if h.Healthy() {
			resp.HealthyRegions++
		}
		if h.Database == nil {
			databases++
		}
	}
	status := http.StatusOK
	switch {
	case resp.HealthyRegions == resp.TotalRegions:
		resp.Status = "healthy"
	case databases > 0:
		resp.Status = "degraded"
	default:
		resp.Status, status = "unhealthy", http.StatusServiceUnavailable
	}
	httpapi.WriteJSON(w, status, resp)
}

func (s *Service) stats(r *http.Request) (any, error) { return s.geo.Stats(r.Context()), nil }
