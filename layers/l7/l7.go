// Package l7 is layer 7, CQRS: commands go to a write database, queries to a separate read
// database, and a projector process carries the events from one to the other. Each
// command and its event commit together in the write database (a transactional outbox);
// the projector reads the outbox directly and applies every event exactly once, keeping its
// position in the read database (see internal/cqrs and README.md).
//
// The API (Service, cmd/l7) and the projector (RunProjector, cmd/l7-projector) are
// separate processes sharing only the two databases, as in the original's compose file.
package l7

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/dblayers/dblayers/internal/apidoc"
	"github.com/dblayers/dblayers/internal/cqrs"
	"github.com/dblayers/dblayers/internal/httpapi"
	"github.com/dblayers/dblayers/internal/pgstore"
	"github.com/dblayers/dblayers/internal/record"
)

// Layer is the health "layer" string.
const Layer = "7-cqrs"

// Databases are the two databases both processes use. The names and defaults are the
// original's.
type Databases struct {
	WriteDBURL string `env:"WRITE_DB_URL" default:"postgresql://dbuser:dbpassword@localhost:5447/write_db"`
	ReadDBURL  string `env:"READ_DB_URL" default:"postgresql://dbuser:dbpassword@localhost:5448/read_db"`
	Pool       pgstore.PoolConfig
}

// Config is the API's environment.
type Config struct {
	Server httpapi.ServerConfig
	Databases
	// StallAfter: /health reports the projector "stalled" when the oldest event it has not
	// applied is older than this, and "not running" when it has not shown itself alive
	// for this long.
	StallAfter time.Duration `env:"PROJECTOR_STALL_AFTER" default:"30s"`
}

// Messages of the original's write answers.
const (
	MsgCreated  = "Command written and event published"
	MsgUpdated  = "Command updated and event published"
	MsgNotFound = "Key not found in read database (may not be projected yet)"
)

// Service is a running L7 API.
type Service struct {
	write, read  *pgstore.Pool
	outbox       *cqrs.Outbox
	model        *cqrs.ReadModel
	stallAfter   time.Duration
	queryTimeout time.Duration // bounds /health and /stats as a whole
	handler      http.Handler
}

// openDatabases opens both pools and creates both schemas, waiting up to StartupTimeout
// for the databases to come up.
func openDatabases(ctx context.Context, cfg Databases) (write, read *pgstore.Pool, err error) {
	if write, err = pgstore.OpenPool(ctx, cfg.WriteDBURL, cfg.Pool, cqrs.WriteSchema...); err != nil {
		return nil, nil, fmt.Errorf("write database: %w", err)
	}
	if read, err = pgstore.OpenPool(ctx, cfg.ReadDBURL, cfg.Pool, cqrs.ReadSchema...); err != nil {
		write.Close()
		return nil, nil, fmt.Errorf("read database: %w", err)
	}
	return write, read, nil
}

// New connects to both databases, creates their schemas and returns the API.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Service, error) {
	write, read, err := openDatabases(ctx, cfg.Databases)
	if err != nil {
		return nil, err
	}
	s := &Service{write: write, read: read, outbox: cqrs.NewOutbox(write), model: cqrs.NewReadModel(read),
		stallAfter: cfg.StallAfter, queryTimeout: cfg.Pool.QueryTimeout}
	r := apidoc.NewRouter(httpapi.Options{Layer: Layer, Logger: logger, Limits: cfg.Server.Limits()}, apiInfo)
	r.Post("/write", httpapi.Handle(s.command(cqrs.RecordCreated, MsgCreated)), opCreate)
	r.Put("/write", httpapi.Handle(s.command(cqrs.RecordUpdated, MsgUpdated)), opUpdate)
	r.Get("/read/{key}", httpapi.Handle(s.readKey), opRead)
	r.Get("/health", httpapi.Handle(s.health), opHealth)
	r.Stats(httpapi.Handle(s.stats), opStats, "/stats")
	s.handler = r
	return s, nil
}

// Handler is the HTTP API.
func (s *Service) Handler() http.Handler { return s.handler }

// Close closes both pools.
func (s *Service) Close() {
	s.read.Close()
	s.write.Close()
}

// WriteResponse is the answer of POST and PUT /write. EventID is the outbox id of the
// command's event, as a string like the original's stream id; it is never null, because
// the event commits with the command.
type WriteResponse struct {
	Success bool   `json:"success"`
	Key     string `json:"key"`
	EventID string `json:"event_id"`
	Message string `json:"message"`
}

func (s *Service) command(eventType, message string) httpapi.HandlerFunc {
	return func(r *http.Request) (any, error) {
		req, _, err := httpapi.DecodeWrite(r)
		if err != nil {
			return nil, err
		}
		id, err := s.outbox.Record(r.Context(), eventType, req.Key, req.Value)
		if err != nil {
			return nil, err
		}
		return WriteResponse{Success: true, Key: req.Key, EventID: strconv.FormatInt(id, 10), Message: message}, nil
	}
}

// ReadResponse is the original's read answer (read_count counts this read too), plus the
// number of events applied to the key.
type ReadResponse struct {
	httpapi.ReadFields
	ReadCount  *int64 `json:"read_count"`
	WriteCount *int64 `json:"write_count"`
	FromReadDB bool   `json:"from_read_db"`
}

func (s *Service) readKey(r *http.Request) (any, error) {
	key, err := httpapi.PathKey(r)
	if err != nil {
		return nil, err
	}
	row, err := s.model.Read(r.Context(), key)
	if errors.Is(err, record.ErrNotFound) {
		return ReadResponse{ReadFields: httpapi.NotFound(key, MsgNotFound), FromReadDB: true}, nil
	}
	if err != nil {
		return nil, err
	}
	return ReadResponse{ReadFields: httpapi.Found(row.Record), ReadCount: &row.ReadCount, WriteCount: &row.WriteCount, FromReadDB: true}, nil
}

// Stats is the /stats document: the original's six fields, each counted in the databases
// so that they are true across processes and restarts, plus the projection's progress.
type Stats struct {
	WriteDBPoolSize int32 `json:"write_db_pool_size"` // open connections of this process's write pool
	ReadDBPoolSize  int32 `json:"read_db_pool_size"`  // open connections of this process's read pool
	EventsPublished int64 `json:"events_published"`   // events in the outbox
	EventsProjected int64 `json:"events_projected"`   // events applied to the read model
	ReadDBRecords   int64 `json:"read_db_records"`    // rows in the read model
	WriteDBRecords  int64 `json:"write_db_records"`   // commands in the write database

	EventsParked         int64         `json:"events_parked"`          // events refused by the read model, set aside
	ParkedEventIDs       []int64       `json:"parked_event_ids"`       // the first 20 of them
	ProjectionLagEvents  int64         `json:"projection_lag_events"`  // committed events not yet applied
	ProjectionLagSeconds float64       `json:"projection_lag_seconds"` // age of the oldest of them
	ProjectedThrough     cqrs.Position `json:"projected_through"`      // the projection's position
	ProjectorLastSeen    *float64      `json:"projector_last_seen_seconds"`
	Projector            string        `json:"projector"` // healthy, stalled or not running
}

// Projector states in /stats and /health.
const (
	ProjectorHealthy    = "healthy"
	ProjectorStalled    = "stalled"     // events wait longer than PROJECTOR_STALL_AFTER
	ProjectorNotRunning = "not running" // no sign of life for PROJECTOR_STALL_AFTER
)

func (s *Service) collect(ctx context.Context) (Stats, error) {
	state, err := s.model.State(ctx)
	if err != nil {
		return Stats{}, err
	}
	backlog, err := s.outbox.Backlog(ctx, state.Position)
	if err != nil {
		return Stats{}, err
	}
	totals, err := s.outbox.Totals(ctx)
	if err != nil {
		return Stats{}, err
	}
	st := Stats{
		WriteDBPoolSize:      s.write.Stat().TotalConns(),
		ReadDBPoolSize:       s.read.Stat().TotalConns(),
		EventsPublished:      totals.Events,
		EventsProjected:      state.EventsProjected,
		ReadDBRecords:        state.Records,
		WriteDBRecords:       totals.Commands,
		EventsParked:         state.EventsParked,
		ParkedEventIDs:       state.ParkedIDs,
		ProjectionLagEvents:  backlog.Events,
		ProjectionLagSeconds: backlog.OldestAge.Seconds(),
		ProjectedThrough:     state.Position,
		Projector:            ProjectorHealthy,
	}
	if state.SinceHeartbeat != nil {
		seen := state.SinceHeartbeat.Seconds()
		st.ProjectorLastSeen = &seen
	}
	switch {
	case backlog.OldestAge > s.stallAfter:
		st.Projector = ProjectorStalled
	case state.SinceHeartbeat == nil || *state.SinceHeartbeat > s.stallAfter:
		st.Projector = ProjectorNotRunning
	}
	return st, nil
}

// stats answers within one query timeout, however many queries it takes.
func (s *Service) stats(r *http.Request) (any, error) {
	ctx, cancel := context.WithTimeout(r.Context(), s.queryTimeout)
	defer cancel()
	return s.collect(ctx)
}

// Health is the /health answer. A database that does not answer is a 503; a projector
// that lags or is gone makes the status "degraded" (HTTP 200: the API itself still takes
// commands and answers queries).
type Health struct {
	Status               string  `json:"status"` // healthy or degraded
	Layer                string  `json:"layer"`
	WriteDB              string  `json:"write_db"`
	ReadDB               string  `json:"read_db"`
	Projector            string  `json:"projector"`
	ProjectionLagEvents  int64   `json:"projection_lag_events"`
	ProjectionLagSeconds float64 `json:"projection_lag_seconds"`
	EventsParked         int64   `json:"events_parked"`
}

// health answers within one query timeout: both databases are pinged at once, then the
// projection's state is read.
func (s *Service) health(r *http.Request) (any, error) {
	ctx, cancel := context.WithTimeout(r.Context(), s.queryTimeout)
	defer cancel()
	var writeErr, readErr error
	var wg sync.WaitGroup
	wg.Go(func() { writeErr = s.outbox.Ping(ctx) })
	wg.Go(func() { readErr = s.model.Ping(ctx) })
	wg.Wait()
	if writeErr != nil {
		return nil, httpapi.Unhealthy("Service unhealthy: write database unavailable", writeErr)
	}
	if readErr != nil {
		return nil, httpapi.Unhealthy("Service unhealthy: read database unavailable", readErr)
	}
	st, err := s.collect(ctx)
	if err != nil {
		return nil, httpapi.Unhealthy("Service unhealthy: projection state unavailable", err)
	}
	h := Health{Status: "healthy", Layer: Layer, WriteDB: "healthy", ReadDB: "healthy", Projector: st.Projector,
		ProjectionLagEvents: st.ProjectionLagEvents, ProjectionLagSeconds: st.ProjectionLagSeconds, EventsParked: st.EventsParked}
	if st.Projector != ProjectorHealthy {
		h.Status = "degraded"
	}
	return h, nil
}
