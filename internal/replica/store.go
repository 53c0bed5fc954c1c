package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/jackc/pgx/v5"

	"github.com/dblayers/dblayers/internal/pgstore"
	"github.com/dblayers/dblayers/internal/record"
)

// Store is a record.Store that writes to the primary and reads from the replicas the
// Balancer picks, falling back to the primary, without ever answering a read with a value
// older than a write it acknowledged (see the package comment).
type Store struct {
	primary  pgstore.Conns
	db       *pgstore.Store // the primary's records
	balancer *Balancer
	writes   *Tracker
	logger   *slog.Logger

	primaryReads atomic.Int64 // reads the primary answered
	notReplayed  atomic.Int64 // ... of which because the picked replica had not replayed the key's last write
}

var _ record.Reader = (*Store)(nil)

// NewStore returns the Store over primary and b, remembering acknowledged writes in writes.
func NewStore(primary pgstore.Conns, b *Balancer, writes *Tracker, logger *slog.Logger) *Store {
	return &Store{primary: primary, db: pgstore.NewStore(primary), balancer: b, writes: writes, logger: logger}
}

// Put upserts on the primary, then records the WAL position that covers the commit. If that
// position cannot be read the write is reported as failed (it may have committed, like any
// write whose answer is lost), because reads of key could not be kept fresh otherwise.
func (s *Store) Put(ctx context.Context, key, value string) error {
	if err := s.db.Put(ctx, key, value); err != nil {
		return err
	}
	// The insert position read after the commit returned is at or past the commit record
	// (even with synchronous_commit off, where the flushed position may still trail it).
	lsn, err := queryLSN(ctx, s.primary, `SELECT pg_current_wal_insert_lsn()::text`)
	if err != nil {
		return pgstore.Classify(fmt.Errorf("read commit position of %q: %w", key, err))
	}
	s.writes.Wrote(key, lsn)
	return nil
}

// Get implements record.Store.
func (s *Store) Get(ctx context.Context, key string) (record.Record, error) {
	r, err := s.Read(ctx, key)
	return r.Record, err
}

// Read reads key from a serving replica that has replayed the key's last acknowledged write,
// else from the primary, and tells which answered. A replica that fails as unreachable is
// marked down and the next one is tried; any other replica error sends the read to the
// primary. The Read's Replica names the replica that answered, empty for the primary.
func (s *Store) Read(ctx context.Context, key string) (record.Read, error) {
	need := s.writes.Need(key)
	for range len(s.balancer.Replicas()) {
		r := s.balancer.Pick()
		if r == nil {
			break
		}
		rec, replayed, err := readReplica(ctx, r.conns, key)
		if err == nil || errors.Is(err, record.ErrNotFound) {
			if replayed >= need {
				r.reads.Add(1)
				return record.Read{Record: rec, Replica: r.name}, err
			}
			s.notReplayed.Add(1)
			break
		}
		if ctx.Err() != nil {
			return record.Read{}, err
		}
		if record.IsUnavailable(err) {
			s.balancer.MarkDown(r)
			s.logger.Warn("replica read failed; trying the next", "replica", r.name, "error", err)
			continue
		}
		s.logger.Warn("replica read failed; reading from the primary", "replica", r.name, "error", err)
		break
	}
	s.primaryReads.Add(1)
	rec, err := s.db.Get(ctx, key)
	return record.Read{Record: rec}, err
}

const replicaSelectSQL = `SELECT key, value, created_at, updated_at FROM records WHERE key = $1`

// readReplica reads key and, first, the replica's replay position, in one round trip. The
// two statements run in order and the select takes its snapshot after the position was
// read, so the row it returns reflects at least everything up to that position.
func readReplica(ctx context.Context, conns pgstore.Conns, key string) (rec record.Record, replayed LSN, err error) {
	err = conns.WithConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		batch := &pgx.Batch{}
		batch.Queue(`SELECT pg_last_wal_replay_lsn()::text`)
		batch.Queue(replicaSelectSQL, key)
		br := c.SendBatch(ctx, batch)
		var text *string
		err := br.QueryRow().Scan(&text)
		if err == nil && text != nil {
			replayed, err = ParseLSN(*text)
		}
		if err == nil {
			err = br.QueryRow().Scan(&rec.Key, &rec.Value, &rec.CreatedAt, &rec.UpdatedAt)
		}
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return record.Record{}, replayed, record.ErrNotFound
	}
	if err != nil {
		return record.Record{}, 0, pgstore.Classify(fmt.Errorf("select %q on replica: %w", key, err))
	}
	return rec, replayed, nil
}

// Stats are the balancer's and the store's numbers together.
type Stats struct {
	Primary        PrimaryStats `json:"primary"`
	Replicas       []Status     `json:"replicas"`
	MaxLagBytes    int64        `json:"max_lag_bytes"`
	MaxLagSeconds  float64      `json:"max_lag_seconds"`
	ReadYourWrites TrackerStats `json:"read_your_writes"`
}

// PrimaryStats add the primary's read counters to its status.
type PrimaryStats struct {
	PrimaryStatus
	ReadsServed int64 `json:"reads_served"`
	// ReadsNotReplayed are the reads the primary answered because the replica picked had
	// not replayed the key's last acknowledged write yet: the price of read-your-writes.
	ReadsNotReplayed int64 `json:"reads_not_replayed"`
}

// Stats returns the current numbers.
func (s *Store) Stats() Stats {
	cfg := s.balancer.Config()
	st := Stats{
		Primary: PrimaryStats{
			PrimaryStatus:    s.balancer.Primary(),
			ReadsServed:      s.primaryReads.Load(),
			ReadsNotReplayed: s.notReplayed.Load(),
		},
		MaxLagBytes:    cfg.MaxLagBytes,
		MaxLagSeconds:  cfg.MaxLag.Seconds(),
		ReadYourWrites: s.writes.Stats(),
	}
	for _, r := range s.balancer.Replicas() {
		st.Replicas = append(st.Replicas, r.Status())
	}
	return st
}
