// Package docstore keeps free-form JSON documents by key in MongoDB, with the official Go
// driver (mongo-driver v2): L8's document side.
//
// A stored document is {_id: key, key, data, created_at, updated_at}: data is the client's
// JSON object, created_at is set when the key is first written and kept, updated_at
// changes on every write (BSON dates, millisecond precision). The key is also the _id, so
// every lookup and upsert is an _id equality: the primary index on MongoDB, and on the
// local FerretDB (PostgreSQL backend) a filter it pushes down to PostgreSQL, answered by the
// _id index tools/ferretdb adds (layers/l8/README.md, "The document store's index"). key keeps the original's field, with a unique index. Both indexes make an
// upsert the only way a key is ever written, so concurrent first writes of one key cannot
// leave two documents (the original had no index at all): an upsert that loses the race
// to insert gets a duplicate-key error and is retried, and then updates the winner's
// document.
//
// Every call is bounded (see Options), and driver errors are classified once here: a
// server that cannot be reached is a record.UnavailableError (HTTP 503 "MongoDB
// unavailable"), anything else stays an internal error. Only what MongoDB 7 and the local
// FerretDB both support is used: no transactions, no pipeline updates, no TTL indexes.
package docstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

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
// OperationTimeout per call before the request fails.
type Options struct {
	Timeout          time.Duration `env:"MONGODB_TIMEOUT" default:"2s"`           // server selection and connecting
	OperationTimeout time.Duration `env:"MONGODB_OPERATION_TIMEOUT" default:"5s"` // one operation, server selection included
	StartupTimeout   time.Duration `env:"MONGODB_STARTUP_TIMEOUT" default:"30s"`  // how long start-up waits for MongoDB
	// Connections to keep open, and at most. Waiting for a connection counts against
	// Timeout, so the pool keeps a few warm for bursts, and stays small: requests queue for
	// a connection instead of piling on the server.
	MinPoolSize int `env:"MONGODB_POOL_MIN_SIZE" default:"4"`
	MaxPoolSize int `env:"MONGODB_POOL_MAX_SIZE" default:"16"`
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
}

// Open connects to the MongoDB server at url and prepares the documents collection of
// database: it waits (up to opts.StartupTimeout, or until ctx ends) for the server, then
// creates the unique index on key. It fails if the collection holds duplicate keys, which
// the index cannot be built over.
func Open(ctx context.Context, url, database string, opts Options) (*Store, error) {
	s := &Store{timeout: max(opts.OperationTimeout, opts.Timeout)}
	monitor := &event.PoolMonitor{Event: func(e *event.PoolEvent) {
		switch e.Type {
		case event.ConnectionCreated:
			s.conns.Add(1)
		case event.ConnectionClosed:
			s.conns.Add(-1)
		}
	}}
	co := options.Client().ApplyURI(url).
		SetAppName("dblayers").
		SetServerSelectionTimeout(opts.Timeout).
		SetConnectTimeout(opts.Timeout).
		SetMinPoolSize(uint64(max(opts.MinPoolSize, 0))).
		SetMaxPoolSize(uint64(max(opts.MaxPoolSize, 1))).
		SetMaxConnecting(uint64(max(opts.MaxPoolSize/4, 2))).
		SetPoolMonitor(monitor)
	client, err := mongo.Connect(co)
	if err != nil {
		return nil, fmt.Errorf("mongodb client: %w", err)
	}
	s.client = client
	s.coll = client.Database(database).Collection(Collection)

	sctx, cancel := context.WithTimeout(ctx, opts.StartupTimeout)
	defer cancel()
	if err := s.ensureIndex(sctx); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, err
	}
	return s, nil
}

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

// Close disconnects from the server.
func (s *Store) Close(ctx context.Context) error { return s.client.Disconnect(ctx) }

// Put upserts key's document: data replaces the old data, updated_at is now, created_at
// is set on the first write only.
func (s *Store) Put(ctx context.Context, key string, data Data) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	now := time.Now().UTC().Truncate(time.Millisecond)
	update := bson.D{
		{Key: "$set", Value: bson.D{{Key: "data", Value: data.doc}, {Key: "updated_at", Value: now}}},
		{Key: "$setOnInsert", Value: bson.D{{Key: "key", Value: key}, {Key: "created_at", Value: now}}},
	}
	var err error
	for range upsertAttempts {
		_, err = s.coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: key}}, update, options.UpdateOne().SetUpsert(true))
		if !mongo.IsDuplicateKeyError(err) {
			break
		}
		// Another upsert inserted the key first: this one now finds and updates it.
	}
	if err != nil {
		return Classify(fmt.Errorf("upsert document %q: %w", key, err))
	}
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
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var doc stored
	err := s.coll.FindOne(ctx, bson.D{{Key: "_id", Value: key}}).Decode(&doc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return Document{}, record.ErrNotFound
	}
	if err != nil {
		return Document{}, Classify(fmt.Errorf("find document %q: %w", key, err))
	}
	data, err := dataJSON(doc.Data)
	if err != nil {
		return Document{}, fmt.Errorf("document %q: %w", key, err)
	}
	return Document{Key: doc.Key, Data: data, CreatedAt: doc.CreatedAt.UTC(), UpdatedAt: doc.UpdatedAt.UTC()}, nil
}

// Count is the number of documents, from the collection's metadata (no scan).
func (s *Store) Count(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	n, err := s.coll.EstimatedDocumentCount(ctx)
	if err != nil {
		return 0, Classify(fmt.Errorf("count documents: %w", err))
	}
	return n, nil
}

// Ping checks that the server answers.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.client.Ping(ctx, readpref.Primary()); err != nil {
		return Classify(fmt.Errorf("ping: %w", err))
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
