// Package docstore keeps free-form JSON documents by key in MongoDB, with the official Go
// driver (mongo-driver v2): L8's document side.
//
// A stored document is {_id: key, key, data, created_at, updated_at}: data is the client's
// JSON object, created_at is set when the key is first written and kept, updated_at
// changes on every write (BSON dates, millisecond precision). The key is also the _id, so
// every lookup and upsert is an _id equality: the primary index on MongoDB, and on the
// local FerretDB (PostgreSQL backend) a filter it pushes down to PostgreSQL, answered by the
// _id index tools/ferretdb adds (layers/l8/README.md, "The document store's index"). key keeps the original's field, with a unique index. Both indexes keep one
// document per key however concurrent first writes of it interleave (the original had no
// index at all): a write is an insert batched with others (see Put) or an upsert, and
// either one that loses the race to create the key gets a duplicate-key error and goes on
// as an upsert of the winner's document.
//
// Every call is bounded (see Options), and driver errors are classified once here: a
// server that cannot be reached is a record.UnavailableError (HTTP 503 "MongoDB
// unavailable"), anything else stays an internal error. A breaker.Guard stands in front of
// every call: once MongoDB has failed a few times in a row (or the driver's own monitor
// could not reach it), calls are refused at once, and the calls still waiting on it are cut
// short, until a probe finds it back (see Open). Only what MongoDB 7 and the local
// FerretDB both support is used: no transactions, no pipeline updates, no TTL indexes.
package docstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	"github.com/dblayers/dblayers/internal/breaker"
	"github.com/dblayers/dblayers/internal/groupcommit"
	"github.com/dblayers/dblayers/internal/record"
)

// Collection is the collection documents live in, as in the original.
const Collection = "documents"

// Backend is the name clients see when MongoDB is down: "MongoDB unavailable".
const Backend = "MongoDB"

// keyIndex is the unique index on key.
const keyIndex = "key_unique"

// upsertAttempts bounds the retries of an upsert that lost a race to insert a new key.
const upsertAttempts = 5

// Options bound the calls to MongoDB, so that a server that is down costs a request
// seconds at most, never the driver's default 30 s. A server that is down or unreachable
// is given up on after Timeout (no server to select); one that answers, but slowly, gets
// OperationTimeout per call before the request fails. OperationTimeout is also the
// client's own timeout (CSOT): no operation of the driver waits longer, whatever the
// context it is given.
type Options struct {
	Timeout          time.Duration `env:"MONGODB_TIMEOUT" default:"2s"`           // server selection and connecting
	OperationTimeout time.Duration `env:"MONGODB_OPERATION_TIMEOUT" default:"5s"` // one operation, server selection included
	StartupTimeout   time.Duration `env:"MONGODB_STARTUP_TIMEOUT" default:"30s"`  // how long start-up waits for MongoDB
	// Connections to keep open, and at most. Waiting for a connection counts against
	// Timeout, so the pool keeps a few warm for bursts, and stays small: requests queue for
	// a connection instead of piling on the server.
	MinPoolSize int `env:"MONGODB_POOL_MIN_SIZE" default:"4"`
	MaxPoolSize int `env:"MONGODB_POOL_MAX_SIZE" default:"16"`
	// Breaker is the guard's threshold and probe interval, set by the layer.
	Breaker breaker.Settings
}

// Document is one stored document.
type Document struct {
	Key       string          `json:"key"`
	Data      json.RawMessage `json:"data"` // a JSON object
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// Store is the documents collection of one MongoDB database.
type Store struct {
	client  *mongo.Client
	coll    *mongo.Collection
	timeout time.Duration
	conns   atomic.Int64 // open connections, from the driver's pool events

	guard   *breaker.Guard
	tripMu  sync.Mutex
	tripped context.Context // cancelled when the guard opens: calls in flight stop waiting
	trip    context.CancelFunc

	inserts     *groupcommit.Batcher[newDocument, bool] // concurrent writes, one insertMany per batch
	skipInserts atomic.Int64                            // writes left that go straight to an upsert
	skipRun     atomic.Int64                            // the last run of skipped inserts; 0 after a batch of new keys
	inserted    atomic.Int64
	batches     atomic.Int64
	upserted    atomic.Int64
}

// WriteCounts count this process's document writes by the way they were done.
type WriteCounts struct {
	Inserted      int64 `json:"inserted"`       // new keys written by a batched insert
	InsertBatches int64 `json:"insert_batches"` // insertMany commands sent
	Upserted      int64 `json:"upserted"`       // writes done as an upsert: the key existed, or inserts were skipped
}

// WriteCounts returns the counts so far.
func (s *Store) WriteCounts() WriteCounts {
	return WriteCounts{Inserted: s.inserted.Load(), InsertBatches: s.batches.Load(), Upserted: s.upserted.Load()}
}

// newDocument is a write as the document it makes of a new key.
type newDocument struct {
	key  string
	data Data
	now  time.Time
}

const (
	insertFlushers = 2   // insertMany commands in flight at once
	maxInsertBatch = 128 // documents per insertMany
	// After a batch in which most keys already existed, the next writes skip the insert: for
	// a run of overwrites, trying the insert first would only add a failed statement (and
	// an error in the server's log). The run is minUpsertRun writes, doubled after each
	// further such batch up to maxUpsertRun; a batch of mostly new keys ends the doubling.
	minUpsertRun = 512
	maxUpsertRun = 32768
)

// Open connects to the MongoDB server at url and prepares the documents collection of
// database: it waits (up to opts.StartupTimeout, or until ctx ends) for the server, then
// creates the unique index on key. It fails if the collection holds duplicate keys, which
// the index cannot be built over.
//
// The store's guard (opts.Breaker) counts as failures the calls MongoDB could not serve
// and the failed heartbeats of the driver's monitor: a server that was killed refuses the
// monitor's connection within milliseconds, while the calls that need it would each wait
// Timeout to select a server. When the guard opens, the calls in flight are cut short
// with the same fast 503 as the calls it refuses; so is its probe if a heartbeat fails
// meanwhile.
func Open(ctx context.Context, url, database string, opts Options) (*Store, error) {
	s := &Store{timeout: max(opts.OperationTimeout, opts.Timeout)}
	s.tripped, s.trip = context.WithCancel(context.Background())
	settings := opts.Breaker
	settings.OnStateChange = func(name string, from, to breaker.State) {
		if to == breaker.Open {
			s.cutOff()
		}
		if opts.Breaker.OnStateChange != nil {
			opts.Breaker.OnStateChange(name, from, to)
		}
	}
	guard, err := breaker.NewGuard(Backend, settings, nil)
	if err != nil {
		return nil, err
	}
	s.guard = guard
	pools := &event.PoolMonitor{Event: func(e *event.PoolEvent) {
		switch e.Type {
		case event.ConnectionCreated:
			s.conns.Add(1)
		case event.ConnectionClosed:
			s.conns.Add(-1)
		}
	}}
	servers := &event.ServerMonitor{ServerHeartbeatFailed: func(e *event.ServerHeartbeatFailedEvent) {
		if s.guard.State() != breaker.Closed {
			s.cutOff() // the probe in flight: it would wait for a server the monitor cannot reach
			return
		}
		_ = s.guard.Do(func() error { return record.Unavailable(Backend, fmt.Errorf("heartbeat: %w", e.Failure)) })
	}}
	co := options.Client().ApplyURI(url).
		SetAppName("dblayers").
		SetTimeout(s.timeout).
		SetServerSelectionTimeout(opts.Timeout).
		SetConnectTimeout(opts.Timeout).
		SetMinPoolSize(uint64(max(opts.MinPoolSize, 0))).
		SetMaxPoolSize(uint64(max(opts.MaxPoolSize, 1))).
		SetMaxConnecting(uint64(max(opts.MaxPoolSize/4, 2))).
		SetPoolMonitor(pools).
		SetServerMonitor(servers)
	client, err := mongo.Connect(co)
	if err != nil {
		return nil, fmt.Errorf("mongodb client: %w", err)
	}
	s.client = client
	s.coll = client.Database(database).Collection(Collection)
	s.inserts = groupcommit.New(insertFlushers, maxInsertBatch, s.insertMany)

	sctx, cancel := context.WithTimeout(ctx, opts.StartupTimeout)
	defer cancel()
	if err := s.ensureIndex(sctx); err != nil {
		_ = s.Close(context.Background())
		return nil, err
	}
	return s, nil
}

// errCutOff is the error of a call cut short because the guard opened while it waited.
var errCutOff = fmt.Errorf("%w: MongoDB failed while the call waited", breaker.ErrOpen)

// cutOff cancels the calls in flight and arms a new trip for the next ones. It runs in
// the guard's state change, under its lock, and does not call the guard.
func (s *Store) cutOff() {
	s.tripMu.Lock()
	defer s.tripMu.Unlock()
	s.trip()
	s.tripped, s.trip = context.WithCancel(context.Background())
}

// call runs op through the guard, within ctx and the operation timeout, and classifies its
// error. If the guard opens while op runs, op is cancelled and the call fails as refused.
func (s *Store) call(ctx context.Context, op func(context.Context) error) error {
	s.tripMu.Lock()
	tripped := s.tripped // taken first: an opening after Allow cuts this call too
	s.tripMu.Unlock()
	done, err := s.guard.Allow()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(tripped, func() { cancel(errCutOff) })
	defer stop()
	ctx, cancelTimeout := context.WithTimeout(ctx, s.timeout)
	defer cancelTimeout()

	err = op(ctx)
	if err != nil && errors.Is(context.Cause(ctx), errCutOff) {
		err = record.Unavailable(Backend, errCutOff)
	}
	err = Classify(err)
	done(err)
	return err
}

// State is the guard's state: closed while MongoDB serves; open (every call refused at
// once) or half-open (one probe in flight, the others refused) after it failed.
func (s *Store) State() breaker.State { return s.guard.State() }

// ensureIndex creates the unique index on key, retrying while the server is unreachable.
func (s *Store) ensureIndex(ctx context.Context) error {
	model := mongo.IndexModel{
		Keys:    bson.D{{Key: "key", Value: 1}},
		Options: options.Index().SetUnique(true).SetName(keyIndex),
	}
	for {
		cctx, cancel := context.WithTimeout(ctx, s.timeout)
		_, err := s.coll.Indexes().CreateOne(cctx, model)
		cancel()
		if err == nil {
			return nil
		}
		err = Classify(err)
		if !record.IsUnavailable(err) {
			return fmt.Errorf("create unique index on %s.key: %w", Collection, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("create unique index on %s.key: %w", Collection, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Close waits for the writes in progress, then disconnects from the server.
func (s *Store) Close(ctx context.Context) error {
	s.inserts.Close()
	return s.client.Disconnect(ctx)
}

// Put upserts key's document: data replaces the old data, updated_at is now, created_at
// is set on the first write only.
//
// Writes are a group commit: concurrent Puts are first tried together as one unordered
// insertMany of the documents they would create, which costs one statement for the whole
// batch where an upsert costs a look-up and a statement per document. A key that already
// exists fails its insert with a duplicate-key error, and that Put then upserts as usual;
// the unique _id and key indexes keep one document per key whichever way it is written.
// When most keys of a batch existed, the writes that follow skip the insert for a while
// (minUpsertRun).
//
// The whole write, the wait for a flusher included, is bounded by the operation timeout: a
// batch runs until the earliest deadline of its writes.
func (s *Store) Put(ctx context.Context, key string, data Data) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	now := time.Now().UTC().Truncate(time.Millisecond)
	if s.insertFirst() {
		inserted, err := s.inserts.Do(ctx, newDocument{key: key, data: data, now: now})
		if err != nil {
			return Classify(fmt.Errorf("insert document %q: %w", key, err))
		}
		if inserted {
			return nil
		}
	}
	return s.upsert(ctx, key, data, now)
}

// insertFirst reports whether a write tries the batched insert first: unless a recent batch
// found most of its keys there already and the run of upserts it set is not over.
func (s *Store) insertFirst() bool {
	for {
		n := s.skipInserts.Load()
		if n <= 0 {
			return true
		}
		if s.skipInserts.CompareAndSwap(n, n-1) {
			return false
		}
	}
}

// insertMany inserts batch's documents in one unordered insertMany: true for each one
// inserted, false for each one the server refused (a key that exists, or a document it
// rejects, which the Put's upsert then reports). ctx ends at the earliest deadline of the
// batch's writes.
func (s *Store) insertMany(ctx context.Context, batch []newDocument) []groupcommit.Result[bool] {
	docs := make([]any, len(batch))
	for i, d := range batch {
		docs[i] = bson.D{
			{Key: "_id", Value: d.key}, {Key: "key", Value: d.key}, {Key: "data", Value: d.data.doc},
			{Key: "created_at", Value: d.now}, {Key: "updated_at", Value: d.now},
		}
	}
	s.batches.Add(1)
	err := s.call(ctx, func(ctx context.Context) error {
		_, err := s.coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
		return err
	})
	results := make([]groupcommit.Result[bool], len(batch))
	for i := range results {
		results[i].Out = true
	}
	if err == nil {
		s.inserted.Add(int64(len(batch)))
		return results
	}
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || len(bwe.WriteErrors) == 0 { // the command itself failed
		for i := range results {
			results[i] = groupcommit.Result[bool]{Err: err}
		}
		return results
	}
	existed := 0
	for _, we := range bwe.WriteErrors {
		if we.Index >= 0 && we.Index < len(results) {
			results[we.Index].Out = false
		}
		if we.HasErrorCode(duplicateKey) {
			existed++
		}
	}
	s.inserted.Add(int64(len(batch) - len(bwe.WriteErrors)))
	if 2*existed > len(batch) {
		run := min(max(2*s.skipRun.Load(), minUpsertRun), maxUpsertRun)
		s.skipRun.Store(run)
		s.skipInserts.Store(run)
	} else {
		s.skipRun.Store(0)
	}
	return results
}

// duplicateKey is MongoDB's error code for a write that would duplicate a unique key.
const duplicateKey = 11000

// upsert writes key's document whether or not it exists.
func (s *Store) upsert(ctx context.Context, key string, data Data, now time.Time) error {
	update := bson.D{
		{Key: "$set", Value: bson.D{{Key: "data", Value: data.doc}, {Key: "updated_at", Value: now}}},
		{Key: "$setOnInsert", Value: bson.D{{Key: "key", Value: key}, {Key: "created_at", Value: now}}},
	}
	err := s.call(ctx, func(ctx context.Context) error {
		var err error
		for range upsertAttempts {
			_, err = s.coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: key}}, update, options.UpdateOne().SetUpsert(true))
			if !mongo.IsDuplicateKeyError(err) {
				break
			}
			// Another write inserted the key first: this one now finds and updates it.
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("upsert document %q: %w", key, err)
	}
	s.upserted.Add(1)
	return nil
}

// stored is a document as MongoDB holds it.
type stored struct {
	Key       string        `bson:"key"`
	Data      bson.RawValue `bson:"data"`
	CreatedAt time.Time     `bson:"created_at"`
	UpdatedAt time.Time     `bson:"updated_at"`
}

// Get reads key's document; a missing key is record.ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) (Document, error) {
	var doc stored
	err := s.call(ctx, func(ctx context.Context) error {
		return s.coll.FindOne(ctx, bson.D{{Key: "_id", Value: key}}).Decode(&doc)
	})
	if errors.Is(err, mongo.ErrNoDocuments) {
		return Document{}, record.ErrNotFound
	}
	if err != nil {
		return Document{}, fmt.Errorf("find document %q: %w", key, err)
	}
	data, err := dataJSON(doc.Data)
	if err != nil {
		return Document{}, fmt.Errorf("document %q: %w", key, err)
	}
	return Document{Key: doc.Key, Data: data, CreatedAt: doc.CreatedAt.UTC(), UpdatedAt: doc.UpdatedAt.UTC()}, nil
}

// Count is the number of documents, from the collection's statistics (collStats), not a
// scan: MongoDB answers from its metadata. The local FerretDB answers with PostgreSQL's row
// count after an ANALYZE of the table, exact while the table is small enough for ANALYZE to
// read every row (30,000 rows at the default statistics target) and a sampled estimate
// beyond. (estimatedDocumentCount, the driver's count from metadata, is a full scan on
// FerretDB: over 5 s with 350,000 documents.)
func (s *Store) Count(ctx context.Context) (int64, error) {
	var stats struct {
		Count int64 `bson:"count"`
	}
	err := s.call(ctx, func(ctx context.Context) error {
		return s.coll.Database().RunCommand(ctx, bson.D{{Key: "collStats", Value: Collection}}).Decode(&stats)
	})
	if err != nil {
		return 0, fmt.Errorf("count documents: %w", err)
	}
	return stats.Count, nil
}

// Ping checks that the server answers. While the guard is open it fails at once, and
// once the probe interval has passed it may be the probe.
func (s *Store) Ping(ctx context.Context) error {
	err := s.call(ctx, func(ctx context.Context) error { return s.client.Ping(ctx, readpref.Primary()) })
	if err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

// Connections is the number of connections the driver holds open to the server now.
func (s *Store) Connections() int64 { return s.conns.Load() }

// shutdownCodes are server error codes that mean "this server cannot serve now": it is
// shutting down, stepping down, or not (or no longer) a writable primary.
var shutdownCodes = []int{6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436}

// Classify marks errors that mean "MongoDB cannot serve now" as record.UnavailableError:
// no server to select, network errors, timeouts, a closed client and the server's own
// shutdown and not-primary errors. A cancelled request and any other error (a duplicate
// key, a bad document) stay as they are.
func Classify(err error) error {
	if err == nil || record.IsUnavailable(err) || errors.Is(err, context.Canceled) {
		return err
	}
	var sel topology.ServerSelectionError
	var se mongo.ServerError
	switch {
	case mongo.IsTimeout(err), mongo.IsNetworkError(err), errors.As(err, &sel),
		errors.Is(err, mongo.ErrClientDisconnected):
		return record.Unavailable(Backend, err)
	case errors.As(err, &se):
		for _, code := range shutdownCodes {
			if se.HasErrorCode(code) {
				return record.Unavailable(Backend, err)
			}
		}
	}
	return err
}
