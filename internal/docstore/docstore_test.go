package docstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/dblayers/dblayers/internal/breaker"
	"github.com/dblayers/dblayers/internal/docstore"
	"github.com/dblayers/dblayers/internal/record"
	"github.com/dblayers/dblayers/internal/record/recordtest"
	"github.com/dblayers/dblayers/internal/testenv"
)

var opts = docstore.Options{Timeout: 2 * time.Second, OperationTimeout: 5 * time.Second, StartupTimeout: 10 * time.Second, MinPoolSize: 4, MaxPoolSize: 16,
	Breaker: breaker.Settings{Threshold: 3, Timeout: time.Second}}

func open(t testing.TB, url, db string, tune ...func(*docstore.Options)) *docstore.Store {
	t.Helper()
	o := opts
	for _, f := range tune {
		f(&o)
	}
	s, err := docstore.Open(context.Background(), url, db, o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// collection is a direct handle on the documents collection, to look behind the store.
func collection(t testing.TB, url, db string) *mongo.Collection {
	t.Helper()
	client, err := mongo.Connect(options.Client().ApplyURI(url))
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	return client.Database(db).Collection(docstore.Collection)
}

func mustParse(t testing.TB, js string) docstore.Data {
	t.Helper()
	d, err := docstore.ParseData([]byte(js))
	require.NoError(t, err)
	return d
}

// The record.Store contract, with records kept as {"value": v} documents. Timestamps are
// BSON dates (milliseconds); the contract's "updated_at moves" holds because a write and
// a read take more than a millisecond.
func TestRecordsContract(t *testing.T) {
	url, db := testenv.MongoURL(t)
	recordtest.Run(t, records{docs: open(t, url, db)})
}

// records keeps plain records as documents, as L8's POST /write and GET /read/{key} do.
type records struct{ docs *docstore.Store }

var _ record.Store = records{}

func (r records) Get(ctx context.Context, key string) (record.Record, error) {
	doc, err := r.docs.Get(ctx, key)
	if err != nil {
		return record.Record{}, err
	}
	return docstore.RecordOf(doc), nil
}

func (r records) Put(ctx context.Context, key, value string) error {
	return r.docs.Put(ctx, key, docstore.ValueData(value))
}

func TestDataRoundTrip(t *testing.T) {
	url, db := testenv.MongoURL(t)
	s := open(t, url, db)
	ctx := context.Background()
	for name, js := range map[string]string{
		"empty":    `{}`,
		"product":  `{"name":"Laptop","price":999.99,"in_stock":true,"tags":["a","b"],"specs":{"ram":16,"cpu":"x"}}`,
		"order":    `{"z":1,"a":2,"m":{"y":1,"b":2}}`,
		"numbers":  `{"i32":2147483647,"i64":9223372036854775807,"neg":-5,"whole":1.0,"frac":0.1,"exp":2.5E+300}`,
		"scalars":  `{"null":null,"t":true,"f":false,"s":""}`,
		"unicode":  `{"测试":"🚀 ümlaut","quote":"\"'\\"}`,
		"nested":   `{"a":[{"x":[1,{"y":[2]}]},{"b":[{"c":null}]}]}`,
		"value":    `{"value":"just a value"}`,
		"html":     `{"h":"<b>&</b>"}`,
		"arrayTop": `{"list":[1,"two",3.5,false,null,{}]}`,
	} {
		key := "rt-" + name
		require.NoError(t, s.Put(ctx, key, mustParse(t, js)), name)
		doc, err := s.Get(ctx, key)
		require.NoError(t, err, name)
		assert.JSONEq(t, js, string(doc.Data), name)
		assert.Equal(t, js, string(doc.Data), "%s: field order and number forms are kept", name)
	}
}

func TestDuplicateFieldKeepsLastValue(t *testing.T) {
	url, db := testenv.MongoURL(t)
	s := open(t, url, db)
	require.NoError(t, s.Put(context.Background(), "k", mustParse(t, `{"a":1,"b":2,"a":3}`)))
	doc, err := s.Get(context.Background(), "k")
	require.NoError(t, err)
	assert.Equal(t, `{"a":3,"b":2}`, string(doc.Data))
}

func TestParseDataRejects(t *testing.T) {
	deep := strings.Repeat(`{"a":`, docstore.MaxDepth+1) + "1" + strings.Repeat("}", docstore.MaxDepth+1)
	for _, tc := range []struct {
		name, js string
		path     []any
	}{
		{"dollar field", `{"$set":1}`, []any{"$set"}},
		{"nested dollar field", `{"a":[{"$where":"x"}]}`, []any{"a", 0, "$where"}},
		{"dotted field", `{"a.b":1}`, []any{"a.b"}},
		{"NUL in field name", `{"a\u0000b":1}`, []any{"a\x00b"}},
		{"NUL in a string", `{"a":["x","b\u0000"]}`, []any{"a", 1}},
		{"empty field name", `{"":1}`, []any{""}},
		{"integer beyond 64 bits", `{"n":92233720368547758070}`, []any{"n"}},
		{"number beyond a double", `{"n":1e400}`, []any{"n"}},
		{"too deep", deep, nil},
		{"array in array", `{"a":[1,[2]]}`, []any{"a", 1}},
		{"empty array in array", `{"a":{"b":[[]]}}`, []any{"a", "b", 0}},
		{"array", `[1,2]`, nil},
		{"scalar", `"x"`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := docstore.ParseData([]byte(tc.js))
			var ide *docstore.InvalidDataError
			require.ErrorAs(t, err, &ide)
			if tc.path != nil {
				assert.Equal(t, tc.path, ide.Path)
			}
			assert.NotEmpty(t, ide.Reason)
		})
	}
	_, err := docstore.ParseData([]byte(strings.Repeat(`{"a":`, docstore.MaxDepth) + "1" + strings.Repeat("}", docstore.MaxDepth)))
	assert.NoError(t, err, "MaxDepth levels are allowed")
}

func TestRecordOf(t *testing.T) {
	at := time.Date(2025, 12, 16, 10, 30, 0, 123_000_000, time.UTC)
	for _, tc := range []struct{ data, value string }{
		{`{"value":"v"}`, "v"},
		{`{"value":""}`, ""},
		{`{"value":"a\"b"}`, `a"b`},
		{`{"value":42}`, `{"value":42}`},
		{`{"value":"v","other":1}`, `{"value":"v","other":1}`},
		{`{"name":"Laptop"}`, `{"name":"Laptop"}`},
		{`{}`, `{}`},
	} {
		rec := docstore.RecordOf(docstore.Document{Key: "k", Data: json.RawMessage(tc.data), CreatedAt: at, UpdatedAt: at})
		assert.Equal(t, record.Record{Key: "k", Value: tc.value, CreatedAt: at, UpdatedAt: at}, rec, tc.data)
	}
}

func TestTimestamps(t *testing.T) {
	url, db := testenv.MongoURL(t)
	s := open(t, url, db)
	ctx := context.Background()
	before := time.Now().UTC().Truncate(time.Millisecond)
	require.NoError(t, s.Put(ctx, "k", mustParse(t, `{"n":1}`)))
	first, err := s.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, first.CreatedAt, first.UpdatedAt)
	assert.False(t, first.CreatedAt.Before(before))
	assert.Equal(t, time.UTC, first.CreatedAt.Location())

	testenv.WaitFor(t, time.Second, "the clock to pass the next millisecond", func() bool {
		return time.Since(first.UpdatedAt) > 2*time.Millisecond
	})
	require.NoError(t, s.Put(ctx, "k", mustParse(t, `{"n":2}`)))
	second, err := s.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, first.CreatedAt, second.CreatedAt, "created_at is kept")
	assert.True(t, second.UpdatedAt.After(first.UpdatedAt), "updated_at moves")
	assert.Equal(t, `{"n":2}`, string(second.Data))
}

// The unique index on key exists, and the server enforces it.
func TestUniqueIndex(t *testing.T) {
	url, db := testenv.MongoURL(t)
	open(t, url, db)
	coll := collection(t, url, db)
	ctx := context.Background()

	specs, err := coll.Indexes().ListSpecifications(ctx)
	require.NoError(t, err)
	var unique []string
	for _, spec := range specs {
		if spec.Unique != nil && *spec.Unique {
			unique = append(unique, spec.Name+" "+spec.KeysDocument.String())
		}
	}
	assert.Equal(t, []string{`key_unique {"key": {"$numberInt":"1"}}`}, unique)

	_, err = coll.InsertOne(ctx, bson.D{{Key: "key", Value: "dup"}})
	require.NoError(t, err)
	_, err = coll.InsertOne(ctx, bson.D{{Key: "dup", Value: "x"}, {Key: "key", Value: "dup"}})
	assert.True(t, mongo.IsDuplicateKeyError(err), "got %v", err)

	// Opening again (a second process, a restart) is harmless.
	open(t, url, db)
}

// Concurrent first writes of one key leave exactly one document, and every write is
// acknowledged: upserts that lose the race to insert are retried as updates.
func TestConcurrentUpsertsOfNewKey(t *testing.T) {
	url, db := testenv.MongoURL(t)
	s := open(t, url, db)
	coll := collection(t, url, db)
	ctx := context.Background()
	const keys, writers = 5, 20
	var wg sync.WaitGroup
	errs := make(chan error, keys*writers)
	for k := range keys {
		for w := range writers {
			wg.Go(func() {
				errs <- s.Put(ctx, fmt.Sprint("new-", k), mustParse(t, fmt.Sprintf(`{"writer":%d}`, w)))
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	for k := range keys {
		n, err := coll.CountDocuments(ctx, bson.D{{Key: "key", Value: fmt.Sprint("new-", k)}})
		require.NoError(t, err)
		assert.Equal(t, int64(1), n, "key new-%d", k)
	}
	n, err := s.Count(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(keys), n)
}

// Concurrent writes of new keys share insertMany commands; overwriting them all at once
// then ends every write as an upsert that keeps created_at; and the writes after that
// batch of existing keys skip the insert and still land.
func TestConcurrentWritesShareInserts(t *testing.T) {
	url, db := testenv.MongoURL(t)
	s := open(t, url, db)
	ctx := context.Background()
	const writers = 64
	writeAll := func(round string) {
		t.Helper()
		start := make(chan struct{})
		var wg sync.WaitGroup
		errs := make([]error, writers)
		for w := range writers {
			wg.Go(func() {
				<-start
				errs[w] = s.Put(ctx, fmt.Sprint("k", w), mustParse(t, fmt.Sprintf(`{"round":%q}`, round)))
			})
		}
		close(start)
		wg.Wait()
		for _, err := range errs {
			require.NoError(t, err)
		}
	}

	writeAll("new")
	counts := s.WriteCounts()
	assert.Equal(t, int64(writers), counts.Inserted)
	assert.Zero(t, counts.Upserted)
	assert.Less(t, counts.InsertBatches, int64(writers/2), "writes waiting for a flusher go together")
	first, err := s.Get(ctx, "k7")
	require.NoError(t, err)
	assert.JSONEq(t, `{"round":"new"}`, string(first.Data))
	assert.Equal(t, first.CreatedAt, first.UpdatedAt)

	testenv.WaitFor(t, time.Second, "the clock to pass the next millisecond", func() bool {
		return time.Since(first.UpdatedAt) > 2*time.Millisecond
	})
	writeAll("again")
	counts = s.WriteCounts()
	assert.Equal(t, int64(writers), counts.Inserted, "no key was inserted twice")
	assert.Equal(t, int64(writers), counts.Upserted)
	second, err := s.Get(ctx, "k7")
	require.NoError(t, err)
	assert.JSONEq(t, `{"round":"again"}`, string(second.Data))
	assert.Equal(t, first.CreatedAt, second.CreatedAt)
	assert.True(t, second.UpdatedAt.After(first.UpdatedAt))

	batches := counts.InsertBatches
	require.NoError(t, s.Put(ctx, "fresh", mustParse(t, `{"n":1}`)))
	counts = s.WriteCounts()
	assert.Equal(t, batches, counts.InsertBatches, "after a batch of existing keys, inserts are skipped")
	assert.Equal(t, int64(writers+1), counts.Upserted)
	doc, err := s.Get(ctx, "fresh")
	require.NoError(t, err)
	assert.JSONEq(t, `{"n":1}`, string(doc.Data))
	n, err := s.Count(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(writers+1), n)
}

// Opening a collection whose keys are already duplicated (the original's data could be)
// fails clearly instead of running without the index.
func TestOpenRefusesDuplicateKeys(t *testing.T) {
	url, db := testenv.MongoURL(t)
	coll := collection(t, url, db)
	_, err := coll.InsertMany(context.Background(), []any{bson.D{{Key: "key", Value: "k"}}, bson.D{{Key: "key", Value: "k"}}})
	require.NoError(t, err)
	_, err = docstore.Open(context.Background(), url, db, opts)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "unique index")
	assert.False(t, record.IsUnavailable(err))
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name        string
		err         error
		unavailable bool
	}{
		{"timeout", context.DeadlineExceeded, true},
		{"disconnected client", mongo.ErrClientDisconnected, true},
		{"network error", mongo.CommandError{Labels: []string{"NetworkError"}, Wrapped: &net.OpError{Op: "read", Err: errors.New("reset")}}, true},
		{"shutting down", mongo.CommandError{Code: 91, Name: "ShutdownInProgress"}, true},
		{"not primary", mongo.CommandError{Code: 10107, Name: "NotWritablePrimary"}, true},
		{"duplicate key is not an outage", mongo.WriteException{WriteErrors: []mongo.WriteError{{Code: 11000}}}, false},
		{"bad value is not an outage", mongo.CommandError{Code: 2, Name: "BadValue"}, false},
		{"cancelled request", context.Canceled, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := docstore.Classify(fmt.Errorf("wrapped: %w", tc.err))
			assert.Equal(t, tc.unavailable, record.IsUnavailable(err))
			assert.ErrorContains(t, err, tc.err.Error(), "the cause is kept for the log")
		})
	}
	assert.NoError(t, docstore.Classify(nil))
}

// With the server stopped, calls fail as Unavailable within Timeout (no server to select),
// not OperationTimeout; when it is back on the same port, the same Store serves again and
// the data is still there.
func TestServerRestart(t *testing.T) {
	srv := testenv.StartMongo(t)
	s := open(t, srv.URL(), "restart", func(o *docstore.Options) { o.Timeout = time.Second })
	ctx := context.Background()
	require.NoError(t, s.Put(ctx, "k", mustParse(t, `{"v":1}`)))
	assert.Positive(t, s.Connections())

	srv.Kill(t)
	for name, call := range map[string]func() error{
		"get":   func() error { _, err := s.Get(ctx, "k"); return err },
		"put":   func() error { return s.Put(ctx, "k", mustParse(t, `{"v":2}`)) },
		"count": func() error { _, err := s.Count(ctx); return err },
		"ping":  func() error { return s.Ping(ctx) },
	} {
		start := time.Now()
		err := call()
		assert.True(t, record.IsUnavailable(err), "%s: got %v", name, err)
		assert.Less(t, time.Since(start), 2*time.Second, name)
	}

	srv.Start(t)
	testenv.WaitFor(t, 15*time.Second, "the store to reconnect", func() bool { return s.Ping(ctx) == nil })
	doc, err := s.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, `{"v":1}`, string(doc.Data))
	require.NoError(t, s.Put(ctx, "k", mustParse(t, `{"v":3}`)))
}

// The store's look-ups by key, a find and the look-up that starts an upsert (the same filter,
// {_id: key}), use an index: PostgreSQL's plan, as FerretDB's explain returns it, has no
// sequential scan (layers/l8/README.md, "The document store's index"). 2,000 documents, so
// that a scan would cost the planner more than the index.
func TestLookupByKeyUsesAnIndex(t *testing.T) {
	url, db := testenv.MongoURL(t)
	s := open(t, url, db)
	ctx := context.Background()
	docs := make([]any, 2000)
	for i := range docs {
		key := fmt.Sprintf("k%d", i)
		docs[i] = bson.D{{Key: "_id", Value: key}, {Key: "key", Value: key}, {Key: "data", Value: bson.D{}}}
	}
	coll := collection(t, url, db)
	_, err := coll.InsertMany(ctx, docs)
	require.NoError(t, err)
	require.NoError(t, s.Put(ctx, "k1000", mustParse(t, `{"v":1}`)))

	var res bson.M
	cmd := bson.D{{Key: "explain", Value: bson.D{{Key: "find", Value: docstore.Collection},
		{Key: "filter", Value: bson.D{{Key: "_id", Value: "k1000"}}}}}}
	require.NoError(t, coll.Database().RunCommand(ctx, cmd).Decode(&res))
	plan, err := bson.MarshalExtJSON(res["queryPlanner"], false, false)
	require.NoError(t, err)
	t.Logf("plan: %s", plan)
	if !strings.Contains(string(plan), `"Plan"`) {
		t.Skip("not FerretDB's PostgreSQL backend: no PostgreSQL plan to read")
	}
	assert.NotContains(t, string(plan), "Seq Scan")
	assert.Contains(t, string(plan), "Index Scan")
}
