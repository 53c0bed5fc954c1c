package shard

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dblayers/dblayers/internal/pgstore"
)

// Mover moves every row that is not on the shard owning it, under Placement, to its owner,
// while the service keeps reading and writing through a resharding Router
// (Router.Resharding). For each page of rows of each shard it
//
//  1. reads the rows (key order, keyset paging) with their xmin, PostgreSQL's version of a
//     row, which changes on every write to it;
//  2. copies the rows that belong elsewhere to their owner with a conditional upsert that
//     never replaces a newer row: a key the service wrote to its new owner during the move
//     keeps that value, and only created_at is taken from the older copy (a record keeps
//     the time of its first write);
//  3. deletes them from the shard they were on only if their xmin is still the one read
//     in step 1, so a write that reached the old row after the copy is never lost: that
//     row is read again and copied again (step 2 lets it replace the copy, it is newer).
//
// Readers never miss a row: it is on its new owner before it leaves its old one, and the
// resharding Router reads the new owner again after a miss on both. Keys that the new
// owner already had (the upsert may have changed their value or created_at there) are
// passed to Invalidate before the old rows are deleted, so that a cache drops what it may
// hold of them; if that fails the Mover stops, and the next run, finding the same rows,
// invalidates them again. Running a Mover again, after it finished or failed half-way, is
// safe and moves only what is still misplaced.
type Mover struct {
	Placement Placement       // where keys belong: the placement over all shards after the move
	Shards    []pgstore.Conns // shard i's database, for every shard of Placement
	BatchSize int             // rows read per page; default 100 (a page holds up to BatchSize values in memory)
	DryRun    bool            // count what would move, change nothing

	// Invalidate, if set, is told the keys that their new owner already had: a cache must
	// drop them. An error stops the Mover before it deletes their old rows.
	Invalidate func(ctx context.Context, keys []string) error
	// Progress, if set, is called after every page with the totals so far.
	Progress func(Report)

	beforeDelete func() // test hook: runs between the copy and the delete of each page
}

// Report is what a Mover did.
type Report struct {
	Strategy string           `json:"strategy"`
	Shards   int              `json:"shards"`
	DryRun   bool             `json:"dry_run"`
	Scanned  int64            `json:"scanned"` // rows read
	Moved    int64            `json:"moved"`   // rows now on their owner and gone from where they were (would move, in a dry run)
	Routes   map[string]int64 `json:"routes"`  // moved rows by "from->to" shard
	// KeptOnTarget counts moved keys whose owner already had a row at least as new (the
	// service wrote the key during the move, or an earlier interrupted run copied it): that
	// row was kept, with the older created_at.
	KeptOnTarget int64 `json:"kept_on_target"`
	// Recopied counts rows that changed on their old shard between copy and delete, and
	// were copied again.
	Recopied    int64   `json:"recopied"`
	Invalidated int64   `json:"invalidated"` // keys passed to Invalidate (their new owner already had them)
	Seconds     float64 `json:"seconds"`
}

// maxAttempts bounds how often one page's rows are copied again because they keep changing
// on their old shard (only writers that still place keys the old way can cause that).
const maxAttempts = 20

const (
	firstPageSQL = `SELECT key, value, created_at, updated_at, xmin::text FROM records ORDER BY key LIMIT $1`
	nextPageSQL  = `SELECT key, value, created_at, updated_at, xmin::text FROM records WHERE key > $2 ORDER BY key LIMIT $1`
	rereadSQL    = `SELECT key, value, created_at, updated_at, xmin::text FROM records WHERE key = ANY($1)`

	// copySQL inserts rows, or merges them into a row the target already has: the newer
	// version (by updated_at) wins, created_at is the earlier of the two. It returns the
	// rows it inserted or changed, whether it inserted them, and their updated_at.
	copySQL = `INSERT INTO records AS r (key, value, created_at, updated_at)
SELECT * FROM unnest($1::varchar[], $2::text[], $3::timestamp[], $4::timestamp[])
ON CONFLICT (key) DO UPDATE SET
	value      = CASE WHEN r.updated_at < EXCLUDED.updated_at THEN EXCLUDED.value ELSE r.value END,
	updated_at = GREATEST(r.updated_at, EXCLUDED.updated_at),
	created_at = LEAST(r.created_at, EXCLUDED.created_at)
WHERE r.updated_at < EXCLUDED.updated_at OR r.created_at > EXCLUDED.created_at
RETURNING r.key, r.xmax = 0, r.updated_at`

	// deleteSQL deletes rows only in the version that was copied.
	deleteSQL = `DELETE FROM records AS r USING unnest($1::varchar[], $2::text[]) AS d(key, xmin)
WHERE r.key = d.key AND r.xmin::text = d.xmin
RETURNING r.key`
)

type row struct {
	key, value           string
	createdAt, updatedAt time.Time
	xmin                 string
}

// Run moves what is misplaced and reports what it moved.
func (m *Mover) Run(ctx context.Context) (Report, error) {
	start := time.Now()
	rep := Report{Strategy: m.Placement.Strategy(), Shards: m.Placement.Shards(), DryRun: m.DryRun, Routes: map[string]int64{}}
	if len(m.Shards) != m.Placement.Shards() {
		return rep, fmt.Errorf("shard: mover has %d databases for %d shards", len(m.Shards), m.Placement.Shards())
	}
	batch := m.BatchSize
	if batch <= 0 {
		batch = 100
	}
	for s := range m.Shards {
		var after *string
		for {
			sql, args := page(after, batch)
			rows, err := m.query(ctx, s, sql, args...)
			if err != nil {
				return m.done(rep, start), err
			}
			rep.Scanned += int64(len(rows))
			var misplaced []row
			for _, r := range rows {
				if m.Placement.Owner(r.key) != s {
					misplaced = append(misplaced, r)
				}
			}
			if m.DryRun {
				for _, r := range misplaced {
					rep.count(s, m.Placement.Owner(r.key))
				}
			} else if err := m.move(ctx, s, misplaced, &rep); err != nil {
				return m.done(rep, start), err
			}
			if m.Progress != nil {
				m.Progress(m.done(rep, start))
			}
			if len(rows) < batch {
				break
			}
			after = &rows[len(rows)-1].key
		}
	}
	return m.done(rep, start), nil
}

func (m *Mover) done(rep Report, start time.Time) Report {
	rep.Seconds = time.Since(start).Seconds()
	return rep
}

func (rep *Report) count(from, to int) {
	rep.Moved++
	rep.Routes[fmt.Sprintf("%d->%d", from, to)]++
}

func page(after *string, batch int) (string, []any) {
	if after == nil {
		return firstPageSQL, []any{batch}
	}
	return nextPageSQL, []any{batch, *after}
}

// move copies rows (all misplaced on shard from) to their owners and deletes them from
// shard from, again for those that changed in between.
func (m *Mover) move(ctx context.Context, from int, rows []row, rep *Report) error {
	for attempt := 1; len(rows) > 0; attempt++ {
		if attempt > maxAttempts {
			return fmt.Errorf("shard %d: %d rows kept changing during the move (is a writer still placing keys the old way?)", from, len(rows))
		}
		byOwner := map[int][]row{}
		for _, r := range rows {
			to := m.Placement.Owner(r.key)
			byOwner[to] = append(byOwner[to], r)
		}
		kept := map[string]bool{}
		for to, rs := range byOwner {
			k, err := m.copy(ctx, to, rs, rep)
			if err != nil {
				return err
			}
			for key := range k {
				kept[key] = true
			}
		}
		if m.beforeDelete != nil {
			m.beforeDelete()
		}
		deleted, err := m.delete(ctx, from, rows)
		if err != nil {
			return err
		}
		var changed []string
		for _, r := range rows {
			if !deleted[r.key] {
				changed = append(changed, r.key)
				continue
			}
			rep.count(from, m.Placement.Owner(r.key))
			if kept[r.key] {
				rep.KeptOnTarget++
			}
		}
		if len(changed) == 0 {
			return nil
		}
		// Written on the old shard after we read them: read the new versions and copy again.
		// A row that is gone was moved by someone else.
		if rows, err = m.query(ctx, from, rereadSQL, changed); err != nil {
			return err
		}
		rep.Recopied += int64(len(rows))
	}
	return nil
}

// copy upserts rows into shard to and returns the keys for which shard to kept its own
// version (as new as ours, or newer).
func (m *Mover) copy(ctx context.Context, to int, rows []row, rep *Report) (map[string]bool, error) {
	keys, values := make([]string, len(rows)), make([]string, len(rows))
	created, updated := make([]time.Time, len(rows)), make([]time.Time, len(rows))
	copied := make(map[string]time.Time, len(rows))
	for i, r := range rows {
		keys[i], values[i], created[i], updated[i] = r.key, r.value, r.createdAt, r.updatedAt
		copied[r.key] = r.updatedAt
	}
	kept := make(map[string]bool, len(rows))
	existed := make(map[string]bool, len(rows)) // the target had the key already
	for _, k := range keys {
		kept[k], existed[k] = true, true // unless the upsert reports otherwise
	}
	err := m.Shards[to].WithConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		rs, err := c.Query(ctx, copySQL, keys, values, created, updated)
		if err != nil {
			return err
		}
		var (
			key      string
			inserted bool
			now      time.Time
		)
		_, err = pgx.ForEachRow(rs, []any{&key, &inserted, &now}, func() error {
			if now.Equal(copied[key]) {
				delete(kept, key)
			}
			if inserted {
				delete(existed, key)
			}
			return nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("shard %d: copy rows: %w", to, pgstore.Classify(err))
	}
	if len(existed) > 0 && m.Invalidate != nil {
		stale := make([]string, 0, len(existed))
		for k := range existed {
			stale = append(stale, k)
		}
		slices.Sort(stale)
		if err := m.Invalidate(ctx, stale); err != nil {
			return nil, fmt.Errorf("invalidate cached copies of moved keys: %w", err)
		}
		rep.Invalidated += int64(len(stale))
	}
	return kept, nil
}

// delete deletes rows from shard from where they are still the version we read, and
// returns the keys it deleted.
func (m *Mover) delete(ctx context.Context, from int, rows []row) (map[string]bool, error) {
	keys, xmins := make([]string, len(rows)), make([]string, len(rows))
	for i, r := range rows {
		keys[i], xmins[i] = r.key, r.xmin
	}
	deleted := make(map[string]bool, len(rows))
	err := m.Shards[from].WithConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		rs, err := c.Query(ctx, deleteSQL, keys, xmins)
		if err != nil {
			return err
		}
		var key string
		_, err = pgx.ForEachRow(rs, []any{&key}, func() error {
			deleted[key] = true
			return nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("shard %d: delete moved rows: %w", from, pgstore.Classify(err))
	}
	return deleted, nil
}

func (m *Mover) query(ctx context.Context, shard int, sql string, args ...any) ([]row, error) {
	var rows []row
	err := m.Shards[shard].WithConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		rs, err := c.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		var r row
		_, err = pgx.ForEachRow(rs, []any{&r.key, &r.value, &r.createdAt, &r.updatedAt, &r.xmin}, func() error {
			rows = append(rows, r)
			return nil
		})
		return err
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		err = pgstore.Classify(err)
	}
	if err != nil {
		return nil, fmt.Errorf("shard %d: read rows: %w", shard, err)
	}
	return rows, nil
}
