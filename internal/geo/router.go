package geo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dblayers/dblayers/internal/breaker"
	"github.com/dblayers/dblayers/internal/record"
)

// Config tunes replication, health checks and the simulated distance between regions.
// REPLICATION_ENABLED is the original's setting; the others are new.
type Config struct {
	ReplicationEnabled bool `env:"REPLICATION_ENABLED" default:"true"` // ship local writes to the other regions
	// InterRegionLatency is added to every call from the request's region to another one
	// (a read that falls back, a batch a shipper delivers): a simulated round trip between
	// regions, 0 = none. The regions of a local stack are all on one machine; this makes
	// the cost of reading far away visible and measurable.
	InterRegionLatency time.Duration `env:"INTER_REGION_LATENCY" default:"0s"`
	BatchSize          int           `env:"REPLICATION_BATCH_SIZE" default:"500"`      // most entries per delivered batch
	BatchBytes         int64         `env:"REPLICATION_BATCH_BYTES" default:"8388608"` // most bytes of values per batch (past the first entry)
	PollInterval       time.Duration `env:"REPLICATION_POLL_INTERVAL" default:"500ms"` // idle shippers look for entries written by other processes this often
	RetryMin           time.Duration `env:"REPLICATION_RETRY_MIN" default:"100ms"`     // first wait after a failed delivery, doubled per failure …
	RetryMax           time.Duration `env:"REPLICATION_RETRY_MAX" default:"5s"`        // … up to this
	HealthInterval     time.Duration `env:"REGION_HEALTH_INTERVAL" default:"1s"`       // how often every region's database and cache are pinged
	CheckTimeout       time.Duration `env:"REGION_CHECK_TIMEOUT" default:"1s"`         // bound on one region's health check
	// SkipAfter is how many calls to a region's database must fail in a row (time out, be
	// refused, break) before the region is skipped: its calls are refused at once, reads
	// go to the other regions, writes homed there answer 503, and the next health check
	// after REGION_HEALTH_INTERVAL probes it.
	SkipAfter int `env:"REGION_SKIP_AFTER" default:"3"`
}

func (c Config) withDefaults() Config {
	c.BatchSize = max(c.BatchSize, 1)
	c.BatchBytes = max(c.BatchBytes, 1)
	if c.PollInterval <= 0 {
		c.PollInterval = 500 * time.Millisecond
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 100 * time.Millisecond
	}
	c.RetryMax = max(c.RetryMax, c.RetryMin)
	if c.HealthInterval <= 0 {
		c.HealthInterval = time.Second
	}
	if c.CheckTimeout <= 0 {
		c.CheckTimeout = time.Second
	}
	c.SkipAfter = max(c.SkipAfter, 1)
	return c
}

// Router is the geo-router: it owns the regions, routes each request to its home region,
// reads with failover, and runs the health monitor and the shippers (one per ordered pair
// of regions) until Close.
type Router struct {
	regions  []*Region
	byKey    map[string]*Region
	cfg      Config
	logger   *slog.Logger
	shippers []*shipper

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Open opens the regions in specs (the first is the default region; the order is the
// fallback order), creates their schemas and starts replication. A region whose database
// is down is waited for up to opts.Pool.StartupTimeout; if it is still down the service
// starts without it and the health monitor creates its schema when it comes up. Open fails
// only if no region can be reached.
func Open(ctx context.Context, specs []RegionSpec, opts RegionOptions, cfg Config, logger *slog.Logger) (*Router, error) {
	if len(specs) == 0 {
		return nil, errors.New("no regions configured")
	}
	r := &Router{byKey: map[string]*Region{}, cfg: cfg.withDefaults(), logger: logger}
	opts.Skip = breaker.Settings{Threshold: uint32(r.cfg.SkipAfter), Timeout: r.cfg.HealthInterval}
	opts.ReplicationConns = int32(2 * (len(specs) - 1)) // a shipper out and one in per other region
	for _, spec := range specs {
		if _, dup := r.byKey[spec.Key]; dup || spec.Key == "" {
			r.closeRegions()
			return nil, fmt.Errorf("region %q configured twice or unnamed", spec.Key)
		}
		reg, err := OpenRegion(ctx, spec, opts, logger)
		if err != nil {
			r.closeRegions()
			return nil, err
		}
		r.regions = append(r.regions, reg)
		r.byKey[spec.Key] = reg
	}

	sctx, cancel := context.WithTimeout(ctx, opts.Pool.StartupTimeout)
	defer cancel()
	errs := make([]error, len(r.regions))
	var wg sync.WaitGroup
	for i, reg := range r.regions {
		wg.Go(func() { errs[i] = reg.EnsureSchema(sctx) })
	}
	wg.Wait()
	ready := 0
	for i, err := range errs {
		if err != nil {
			logger.Warn("region not reachable at start-up; serving without it until it is", "region", r.regions[i].key, "error", err)
			continue
		}
		ready++
	}
	if ready == 0 {
		r.closeRegions()
		return nil, fmt.Errorf("no region reachable: %w", errors.Join(errs...))
	}

	bg, stop := context.WithCancel(context.Background())
	r.cancel = stop
	if r.cfg.ReplicationEnabled {
		for _, from := range r.regions {
			for _, to := range r.regions {
				if from != to {
					r.shippers = append(r.shippers, newShipper(from, to, r.cfg, r.hop, logger))
				}
			}
		}
	}
	for _, s := range r.shippers {
		r.wg.Go(func() { s.run(bg) })
	}
	r.wg.Go(func() { r.monitor(bg) })
	return r, nil
}

// Close stops the shippers and the monitor, then closes every region.
func (r *Router) Close() {
	r.cancel()
	r.wg.Wait()
	r.closeRegions()
}

func (r *Router) closeRegions() {
	for _, reg := range r.regions {
		reg.Close()
	}
}

// Regions returns the regions in order.
func (r *Router) Regions() []*Region { return r.regions }

// Config returns the router's configuration (with defaults applied).
func (r *Router) Config() Config { return r.cfg }

// Region returns the region with this key, or an *UnknownRegionError.
func (r *Router) Region(key string) (*Region, error) {
	if reg, ok := r.byKey[key]; ok {
		return reg, nil
	}
	valid := make([]string, len(r.regions))
	for i, reg := range r.regions {
		valid[i] = reg.key
	}
	return nil, &UnknownRegionError{Key: key, Valid: valid}
}

// Route picks a request's home region: the first non-empty candidate (for a write, the
// X-Region header then the body's region; for a read, the header), which must be a
// region's exact key; with none, the default region.
func (r *Router) Route(candidates ...string) (*Region, error) {
	for _, c := range candidates {
		if c != "" {
			return r.Region(c)
		}
	}
	return r.regions[0], nil
}

// hop is one call from region from to region to: it costs InterRegionLatency when they
// differ.
func (r *Router) hop(ctx context.Context, from, to *Region) error {
	if from == to || r.cfg.InterRegionLatency <= 0 {
		return nil
	}
	t := time.NewTimer(r.cfg.InterRegionLatency)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// WriteResult is a committed local write.
type WriteResult struct {
	Entry         Entry
	ReplicatingTo []*Region // the regions its outbox entries are for
}

// Write commits a write in its home region, with an outbox entry for every other region
// when replication is on, and wakes the shippers. Replication happens after the answer.
func (r *Router) Write(ctx context.Context, home *Region, key, value string) (WriteResult, error) {
	var dests []*Region
	var destKeys []string
	if r.cfg.ReplicationEnabled {
		for _, reg := range r.regions {
			if reg != home {
				dests = append(dests, reg)
				destKeys = append(destKeys, reg.key)
			}
		}
	}
	e, err := home.Write(ctx, key, value, destKeys)
	if err != nil {
		return WriteResult{}, err
	}
	for _, s := range r.shippers {
		if s.from == home {
			signal(s.wake)
		}
	}
	return WriteResult{Entry: e, ReplicatingTo: dests}, nil
}

// Why a read was answered by another region than its home.
const (
	FallbackNotFound    = "not_found"   // the home region does not have the key (yet)
	FallbackUnavailable = "unavailable" // the home region could not be read
)

// ReadResult is the answer to a read.
type ReadResult struct {
	Entry     Entry
	Found     bool
	FromCache bool
	Region    *Region // the region that answered; the home region when not found
	Fallback  string  // "" when the home region answered, else FallbackNotFound or FallbackUnavailable
	// Unavailable lists the regions that could not be read (known down, or failing now).
	Unavailable []*Region
}

// Read looks key up in the home region (cache, then database). If the home region does not
// have it, or fails, the other regions are tried in order — leaving out those being
// skipped — each at the cost of a call across regions. A key found nowhere is not found, unless the
// home region could not be read: then nothing can be said and the home region's error is
// returned (503).
func (r *Router) Read(ctx context.Context, home *Region, key string) (ReadResult, error) {
	order := make([]*Region, 0, len(r.regions))
	order = append(order, home)
	for _, reg := range r.regions {
		if reg != home {
			order = append(order, reg)
		}
	}
	res := ReadResult{Region: home}
	var homeErr error
	for _, reg := range order {
		if err := reg.serving(); err != nil {
			res.Unavailable = append(res.Unavailable, reg)
			if reg == home {
				homeErr = err
			}
			continue
		}
		if err := r.hop(ctx, home, reg); err != nil {
			return ReadResult{}, err
		}
		e, fromCache, err := reg.Lookup(ctx, key)
		switch {
		case err == nil:
			res.Entry, res.Found, res.FromCache, res.Region = e, true, fromCache, reg
			if reg != home {
				res.Fallback = FallbackNotFound
				if homeErr != nil {
					res.Fallback = FallbackUnavailable
				}
			}
			return res, nil
		case errors.Is(err, record.ErrNotFound):
		case ctx.Err() != nil:
			return ReadResult{}, err
		default:
			r.logger.Warn("region read failed; trying the next region", "region", reg.key, "key", key, "error", err)
			res.Unavailable = append(res.Unavailable, reg)
			if reg == home {
				homeErr = err
			}
		}
	}
	if homeErr != nil {
		return ReadResult{}, homeErr
	}
	return res, nil
}

// RegionHealth is the result of one region's check.
type RegionHealth struct {
	Region   *Region
	Database error // nil when the ping answered
	Cache    error // nil when PING answered
	Skipped  bool  // the region's database is being skipped, after the check
}

// Healthy is the original's definition: database and cache both answer.
func (h RegionHealth) Healthy() bool { return h.Database == nil && h.Cache == nil }

// DatabaseState is State(Database), except that a region being skipped is "skipped" also
// when its check was the probe, and failed.
func (h RegionHealth) DatabaseState() string {
	if h.Database != nil && h.Skipped {
		return "skipped"
	}
	return State(h.Database)
}

// Check pings every region's database and cache, all at once, each bounded by CheckTimeout,
// and records the results for routing.
func (r *Router) Check(ctx context.Context) []RegionHealth {
	out := make([]RegionHealth, len(r.regions))
	var wg sync.WaitGroup
	for i, reg := range r.regions {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, r.cfg.CheckTimeout)
			defer cancel()
			was := reg.Healthy()
			db, c := reg.Check(cctx)
			out[i] = RegionHealth{Region: reg, Database: db, Cache: c, Skipped: reg.Skipped()}
			if !was && reg.Healthy() {
				r.logger.Info("region is back", "region", reg.key)
				r.retryShippers(reg)
			}
		})
	}
	wg.Wait()
	return out
}

// retryShippers cuts short the backoff of every shipper from or to reg.
func (r *Router) retryShippers(reg *Region) {
	for _, s := range r.shippers {
		if s.from == reg || s.to == reg {
			signal(s.retry)
		}
	}
}

func (r *Router) monitor(ctx context.Context) {
	t := time.NewTicker(r.cfg.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.Check(ctx)
		}
	}
}

// OutboundStats is one region's replication towards one other region.
type OutboundStats struct {
	// BacklogEntries and LagSeconds come from the source's outbox: null while the source
	// cannot be read.
	BacklogEntries *int64   `json:"backlog_entries"`
	LagSeconds     *float64 `json:"lag_seconds"`
	ShipperStats
}

// RegionStats is one region's entry in /stats: the original's five fields, then ours.
type RegionStats struct {
	Region       string `json:"region"`
	DBPoolSize   int32  `json:"db_pool_size"`  // open connections
	CacheKeys    int64  `json:"cache_keys"`    // DBSIZE; 0 while the cache is down
	TotalRecords int64  `json:"total_records"` // rows; 0 while the database is down
	Healthy      bool   `json:"healthy"`       // database and cache answer
	Database     string `json:"database"`      // "healthy" | "skipped" | "unavailable" (State)
	Cache        string `json:"cache"`         // "healthy" | "skipped" | "unavailable" (State)
	// Skipped is true while the region's database is being skipped: after REGION_SKIP_AFTER
	// failed calls in a row its calls are refused at once, its reads served elsewhere,
	// until a health check finds it back.
	Skipped bool `json:"skipped"`
	// RecordsOriginated counts the rows whose current version was written here.
	RecordsOriginated int64 `json:"records_originated"`
	// ReplicationBacklog is how many writes made elsewhere this region has not applied yet,
	// and ReplicationLagSeconds the age of the oldest of them: how far behind it is. Both
	// count what the reachable regions hold for it.
	ReplicationBacklog    int64   `json:"replication_backlog"`
	ReplicationLagSeconds float64 `json:"replication_lag_seconds"`
	// Outbound is, per destination (display name), what this region still has to ship.
	Outbound map[string]OutboundStats `json:"outbound"`
}

// Stats is the /stats document.
type Stats struct {
	Regions        []RegionStats `json:"regions"`
	TotalRegions   int           `json:"total_regions"`
	HealthyRegions int           `json:"healthy_regions"`
	// TotalRecordsGlobal counts distinct keys: each key is counted in the one region that
	// wrote its current version (the sum of records_originated). Exact whenever replication
	// has caught up; while writes of one key made in two regions are still in flight, that
	// key may be counted in both.
	TotalRecordsGlobal   int64   `json:"total_records_global"`
	ReplicationEnabled   bool    `json:"replication_enabled"`
	ReplicationBacklog   int64   `json:"replication_backlog"` // all regions' outboxes together
	InterRegionLatencyMs float64 `json:"inter_region_latency_ms"`
}

// Stats checks every region, then gathers their numbers, all regions at once, each step
// bounded by CheckTimeout: a region that hangs costs /stats two of them at most, one once
// it is skipped.
func (r *Router) Stats(ctx context.Context) Stats {
	health := r.Check(ctx)
	ctx, cancel := context.WithTimeout(ctx, r.cfg.CheckTimeout)
	defer cancel()
	type gathered struct {
		keys     int64
		counts   Counts
		backlogs map[string]Backlog
		ok       bool
	}
	got := make([]gathered, len(r.regions))
	var wg sync.WaitGroup
	for i, reg := range r.regions {
		wg.Go(func() {
			if n, err := reg.CacheKeys(ctx); err == nil {
				got[i].keys = n
			}
			if health[i].Database != nil {
				return
			}
			c, err1 := reg.Count(ctx)
			b, err2 := reg.Backlogs(ctx)
			if err1 == nil && err2 == nil {
				got[i] = gathered{keys: got[i].keys, counts: c, backlogs: b, ok: true}
			}
		})
	}
	wg.Wait()

	st := Stats{TotalRegions: len(r.regions), ReplicationEnabled: r.cfg.ReplicationEnabled,
		InterRegionLatencyMs: float64(r.cfg.InterRegionLatency.Microseconds()) / 1000}
	for i, reg := range r.regions {
		h := health[i]
		rs := RegionStats{
			Region: reg.name, DBPoolSize: reg.PoolSize(), CacheKeys: got[i].keys, Healthy: h.Healthy(),
			Database: h.DatabaseState(), Cache: State(h.Cache), Skipped: h.Skipped, Outbound: map[string]OutboundStats{},
		}
		if h.Healthy() {
			st.HealthyRegions++
		}
		if got[i].ok {
			rs.TotalRecords, rs.RecordsOriginated = got[i].counts.Total, got[i].counts.Originated
			st.TotalRecordsGlobal += rs.RecordsOriginated
		}
		for _, s := range r.shippers {
			if s.from != reg {
				continue
			}
			out := OutboundStats{ShipperStats: s.stats()}
			if got[i].ok {
				b := got[i].backlogs[s.to.key]
				out.BacklogEntries, out.LagSeconds = &b.Entries, &b.LagSeconds
			}
			rs.Outbound[s.to.name] = out
		}
		// Anything left in an outbox for a region, also after replication was switched off.
		for _, to := range r.regions {
			if b, ok := got[i].backlogs[to.key]; ok && got[i].ok {
				st.ReplicationBacklog += b.Entries
			}
		}
		st.Regions = append(st.Regions, rs)
	}
	for i, reg := range r.regions {
		for j := range r.regions {
			if b, ok := got[j].backlogs[reg.key]; ok && got[j].ok && i != j {
				st.Regions[i].ReplicationBacklog += b.Entries
				st.Regions[i].ReplicationLagSeconds = max(st.Regions[i].ReplicationLagSeconds, b.LagSeconds)
			}
		}
	}
	return st
}

// Backlog is the number of outbox entries in all reachable regions, for tests and for
// waiting until replication has caught up; ok is false if a region could not be read.
func (r *Router) Backlog(ctx context.Context) (n int64, ok bool) {
	ok = true
	for _, reg := range r.regions {
		b, err := reg.Backlogs(ctx)
		if err != nil {
			ok = false
			continue
		}
		for _, x := range b {
			n += x.Entries
		}
	}
	return n, ok
}
