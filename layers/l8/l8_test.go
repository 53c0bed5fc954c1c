package l8_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/dblayers/dblayers/internal/docstore"
	"github.com/dblayers/dblayers/internal/layertest"
	"github.com/dblayers/dblayers/internal/testenv"
	"github.com/dblayers/dblayers/layers/l8"
)

// backends are the three stores one L8 instance uses.
type backends struct {
	pg, mongo, mongoDB, redis string
}

// shared gives t its own PostgreSQL database, MongoDB database and Redis database on the
// shared test servers.
func shared(t *testing.T) backends {
	t.Helper()
	mongoURL, mongoDB := testenv.MongoURL(t)
	return backends{pg: testenv.PostgresURL(t), mongo: mongoURL, mongoDB: mongoDB, redis: testenv.RedisURL(t)}
}

// start runs L8 on b behind an httptest server; tune may change the configuration.
func start(t *testing.T, b backends, tune ...func(*l8.Config)) layertest.Target {
	t.Helper()
	srv := layertest.Serve(t, l8.New, func(cfg *l8.Config) {
		cfg.PostgresURL, cfg.MongoURL, cfg.MongoDatabase, cfg.RedisURL = b.pg, b.mongo, b.mongoDB, b.redis
		for _, f := range tune {
			f(cfg)
		}
	})
	return layertest.Target{
		URL: srv.URL, Layer: l8.Layer, WriteMessage: l8.MsgDocumentWritten,
		Rows: func(t testing.TB) int { return int(countDocuments(t, b, bson.D{})) },
	}
}

func client(t *testing.T, tg layertest.Target) *layertest.Client { return layertest.NewClient(t, tg) }

func post(c *layertest.Client, path string, body any) layertest.Response {
	raw, _ := json.Marshal(body)
	return c.Do(http.MethodPost, path, raw)
}

func writeTransaction(t *testing.T, c *layertest.Client, user string, amount any, txType string) layertest.Response {
	t.Helper()
	r := post(c, "/write/transaction", map[string]any{"user_id": user, "amount": amount, "transaction_type": txType})
	require.Equal(t, http.StatusOK, r.Status, string(r.Raw))
	return r
}

func writeDocument(t *testing.T, c *layertest.Client, key string, data any) layertest.Response {
	t.Helper()
	r := post(c, "/write/document", map[string]any{"key": key, "data": data})
	require.Equal(t, http.StatusOK, r.Status, string(r.Raw))
	return r
}

func mongoCollection(t testing.TB, b backends) *mongo.Collection {
	t.Helper()
	cl, err := mongo.Connect(options.Client().ApplyURI(b.mongo).SetServerSelectionTimeout(5 * time.Second))
	require.NoError(t, err)
	t.Cleanup(func() { _ = cl.Disconnect(context.Background()) })
	return cl.Database(b.mongoDB).Collection(docstore.Collection)
}

func countDocuments(t testing.TB, b backends, filter bson.D) int64 {
	t.Helper()
	n, err := mongoCollection(t, b).CountDocuments(context.Background(), filter)
	require.NoError(t, err)
	return n
}

func countTransactions(t testing.TB, b backends) int {
	t.Helper()
	var n int
	require.NoError(t, testenv.QueryRow(b.pg, "SELECT count(*) FROM transactions", nil, &n))
	return n
}

// ---------------------------------------------------------------------------------------
// The common contract: /write and /read/{key} keep records as documents.

func TestContract(t *testing.T) {
	layertest.Run(t, start(t, shared(t)))
}

// env is one running L8 and its stores, shared by the subtests of TestPolyglot (each uses
// its own keys and user ids).
type env struct {
	b  backends
	tg layertest.Target
}

// TestPolyglot runs the original's 18 tests (tests/test_polyglot.py, by their names; some
// corrected, see each function) and the tests of what the original got wrong, against one
// service.
func TestPolyglot(t *testing.T) {
	b := shared(t)
	e := env{b: b, tg: start(t, b)}
	for _, tc := range []struct {
		name string
		test func(*testing.T, env)
	}{
		{"test_health", health},
		{"test_write_transaction_to_postgres", writeTransactionToPostgres},
		{"test_write_document_to_mongodb", writeDocumentToMongoDB},
		{"test_read_transaction_from_postgres", readTransactionFromPostgres},
		{"test_read_transaction_from_cache", readTransactionFromCache},
		{"test_read_document_from_mongodb", readDocumentFromMongoDB},
		{"test_read_document_from_cache", readDocumentFromCache},
		{"test_document_cache_invalidation", documentCacheInvalidation},
		{"test_flexible_schema_mongodb", flexibleSchema},
		{"test_postgres_acid_transactions", manyTransactionsOneUser},
		{"test_stats_endpoint", stats},
		{"test_multiple_databases_working", multipleDatabasesWorking},
		{"test_postgres_data_integrity", postgresDataIntegrity},
		{"test_mongodb_data_persistence", mongoDBDataPersistence},
		{"test_read_nonexistent_transaction", readMissingTransactions},
		{"test_read_nonexistent_document", readMissingDocument},
		{"test_concurrent_writes_different_dbs", writesToBothDatabases},
		// test_cache_ttl_behavior is TestTransactionCacheTTL (it needs its own TTL).

		{"new transaction invalidates the cached list", newTransactionInvalidatesList},
		{"amounts are exact", amountsAreExact},
		{"transaction validation", transactionValidation},
		{"document validation", documentValidation},
		{"empty document is cached", emptyDocumentIsCached},
		{"records are documents", recordsAreDocuments},
		{"concurrent upserts of one new key", concurrentUpsertsOfOneNewKey},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.test(t, e) })
	}
}

// statsOf reads /stats.
func statsOf(t *testing.T, c *layertest.Client) map[string]any {
	t.Helper()
	r := c.Get("/stats")
	require.Equal(t, http.StatusOK, r.Status, string(r.Raw))
	return r.Body
}

// delta is how much a numeric stats field grew.
func delta(before, after map[string]any, field string) float64 {
	return after[field].(float64) - before[field].(float64)
}

// ---------------------------------------------------------------------------------------
// The original's tests/test_polyglot.py (some corrected, see comments).

// test_health, corrected: the checks are real and each component's state is reported.
func health(t *testing.T, e env) {
	r := client(t, e.tg).Get("/health")
	require.Equal(t, http.StatusOK, r.Status)
	assert.Equal(t, "healthy", r.Body["status"])
	assert.Equal(t, "8-polyglot-persistence", r.Body["layer"])
	assert.ElementsMatch(t, []any{"PostgreSQL", "MongoDB", "Redis"}, r.Body["databases"])
	assert.Equal(t, map[string]any{"PostgreSQL": "healthy", "MongoDB": "healthy", "Redis": "healthy"}, r.Body["components"])
}

// test_write_transaction_to_postgres
func writeTransactionToPostgres(t *testing.T, e env) {
	c := client(t, e.tg)
	r := writeTransaction(t, c, "user_001", 150.75, "purchase")
	assert.Equal(t, true, r.Body["success"])
	assert.NotNil(t, r.Body["transaction_id"])
	assert.Equal(t, "PostgreSQL", r.Body["stored_in"])
	assert.Equal(t, "Transaction written to PostgreSQL", r.Body["message"])
}

// test_write_document_to_mongodb
func writeDocumentToMongoDB(t *testing.T, e env) {
	c := client(t, e.tg)
	data := map[string]any{"name": "Product A", "price": 29.99, "category": "electronics"}
	r := writeDocument(t, c, "product_001", data)
	assert.Equal(t, true, r.Body["success"])
	assert.Equal(t, "product_001", r.Body["key"])
	assert.Equal(t, "MongoDB", r.Body["stored_in"])
	assert.Equal(t, false, r.Body["from_cache"])
	assert.Equal(t, data, r.Body["data"], "the data is echoed")
}

// test_read_transaction_from_postgres
func readTransactionFromPostgres(t *testing.T, e env) {
	c := client(t, e.tg)
	writeTransaction(t, c, "user_002", 200.00, "deposit")
	r := c.Get("/read/transaction/user_002")
	require.Equal(t, http.StatusOK, r.Status)
	assert.Equal(t, true, r.Body["success"])
	assert.Equal(t, "user_002", r.Body["key"])
	assert.Equal(t, "postgres", r.Body["source"])
	require.Len(t, r.Body["value"], 1)
	txn := r.Body["value"].([]any)[0].(map[string]any)
	assert.Equal(t, "user_002", txn["user_id"])
	assert.Equal(t, 200.0, txn["amount"])
	assert.Equal(t, "deposit", txn["transaction_type"])
	assert.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?$`, txn["created_at"])
	assert.Contains(t, string(r.Raw), `"amount":200.00`, "the amount travels exactly, with its two decimals")
}

// test_read_transaction_from_cache
func readTransactionFromCache(t *testing.T, e env) {
	c := client(t, e.tg)
	writeTransaction(t, c, "user_003", 50.25, "withdrawal")
	first := c.Get("/read/transaction/user_003")
	assert.Equal(t, "postgres", first.Body["source"])
	second := c.Get("/read/transaction/user_003")
	assert.Equal(t, "cache", second.Body["source"])
	assert.Equal(t, first.Body["value"], second.Body["value"])
	assert.Contains(t, string(second.Raw), `"amount":50.25`)
}

// test_read_document_from_mongodb
func readDocumentFromMongoDB(t *testing.T, e env) {
	c := client(t, e.tg)
	writeDocument(t, c, "product_002", map[string]any{"name": "Laptop", "price": 999.99})
	r := c.Get("/read/document/product_002")
	require.Equal(t, http.StatusOK, r.Status)
	assert.Equal(t, true, r.Body["success"])
	assert.Equal(t, "Laptop", r.Body["data"].(map[string]any)["name"])
	assert.Equal(t, "MongoDB", r.Body["stored_in"])
	assert.Equal(t, false, r.Body["from_cache"])
}

// test_read_document_from_cache
func readDocumentFromCache(t *testing.T, e env) {
	c := client(t, e.tg)
	writeDocument(t, c, "product_003", map[string]any{"name": "Mouse", "price": 19.99})
	first := c.Get("/read/document/product_003")
	second := c.Get("/read/document/product_003")
	assert.Equal(t, false, first.Body["from_cache"])
	assert.Equal(t, true, second.Body["from_cache"])
	assert.Equal(t, "Redis (cache)", second.Body["stored_in"])
	assert.Equal(t, first.Body["data"], second.Body["data"])
}

// test_document_cache_invalidation
func documentCacheInvalidation(t *testing.T, e env) {
	c := client(t, e.tg)
	writeDocument(t, c, "product_004", map[string]any{"name": "Keyboard", "price": 49.99})
	c.Get("/read/document/product_004")
	require.Equal(t, true, c.Get("/read/document/product_004").Body["from_cache"])
	writeDocument(t, c, "product_004", map[string]any{"name": "Keyboard", "price": 39.99})
	r := c.Get("/read/document/product_004")
	assert.Equal(t, false, r.Body["from_cache"])
	assert.Equal(t, "MongoDB", r.Body["stored_in"])
	assert.Equal(t, 39.99, r.Body["data"].(map[string]any)["price"])
}

// test_flexible_schema_mongodb: documents of different shapes, with integers and arrays,
// round-trip exactly (field order and number forms included).
func flexibleSchema(t *testing.T, e env) {
	c := client(t, e.tg)
	docs := map[string]string{
		"user_profile_001": `{"name":"John Doe","age":30,"email":"john@example.com"}`,
		"user_profile_002": `{"name":"Jane","skills":["Python","Go"],"address":{"city":"NYC","zip":10001},"score":1.0}`,
	}
	for key, data := range docs {
		r := c.Do(http.MethodPost, "/write/document", []byte(`{"key":"`+key+`","data":`+data+`}`))
		require.Equal(t, http.StatusOK, r.Status, string(r.Raw))
	}
	for key, data := range docs {
		for _, cached := range []bool{false, true} {
			r := c.Get("/read/document/" + key)
			assert.Equal(t, cached, r.Body["from_cache"])
			assert.Contains(t, string(r.Raw), `"data":`+data+`,`, "exact round trip of %s", key)
		}
	}
}

// test_postgres_acid_transactions: 5 writes for one user are all listed, newest first.
func manyTransactionsOneUser(t *testing.T, e env) {
	c := client(t, e.tg)
	for i := range 5 {
		writeTransaction(t, c, "user_004", fmt.Sprintf("%d.5", 100+i), "purchase")
	}
	r := c.Get("/read/transaction/user_004")
	require.Len(t, r.Body["value"], 5)
	var ids []float64
	for _, v := range r.Body["value"].([]any) {
		ids = append(ids, v.(map[string]any)["id"].(float64))
	}
	for i := 1; i < len(ids); i++ {
		assert.Greater(t, ids[i-1], ids[i], "newest first")
	}
	assert.Equal(t, 104.5, r.Body["value"].([]any)[0].(map[string]any)["amount"])
}

// test_stats_endpoint: the original's five fields, live; /stats and /cache-stats agree.
func stats(t *testing.T, e env) {
	c := client(t, e.tg)
	before := statsOf(t, c)
	writeTransaction(t, c, "user_stats", 1, "t")
	writeDocument(t, c, "doc_stats", map[string]any{"a": 1})
	c.Get("/read/document/doc_stats")
	c.Get("/read/document/doc_stats")
	after := statsOf(t, c)
	for _, field := range []string{"postgres_pool_size", "mongodb_connections", "cache_keys", "total_transactions", "total_documents"} {
		assert.IsType(t, 0.0, after[field], field)
	}
	assert.Equal(t, 1.0, delta(before, after, "total_transactions"))
	assert.Equal(t, 1.0, delta(before, after, "total_documents"))
	assert.Positive(t, after["postgres_pool_size"])
	assert.Positive(t, after["mongodb_connections"])
	assert.Equal(t, true, after["cache_available"])
	assert.Equal(t, 1.0, delta(before, after, "cache_hits"))
	assert.Equal(t, 1.0, delta(before, after, "cache_misses"))
	// One document written, by a batched insert or (after overwrites) an upsert.
	wb, wa := before["document_writes"].(map[string]any), after["document_writes"].(map[string]any)
	assert.Equal(t, 1.0, delta(wb, wa, "inserted")+delta(wb, wa, "upserted"))
	assert.Equal(t, delta(wb, wa, "inserted"), delta(wb, wa, "insert_batches"))
	assert.Equal(t, after, statsOf(t, c), "nothing changed in between")
	assert.Equal(t, after, c.Get("/cache-stats").Body)
}

// test_multiple_databases_working
func multipleDatabasesWorking(t *testing.T, e env) {
	c := client(t, e.tg)
	writeTransaction(t, c, "user_005", 75.50, "purchase")
	writeDocument(t, c, "config_001", map[string]any{"setting": "dark_mode", "enabled": true})
	r := c.Get("/stats")
	assert.Positive(t, r.Body["total_transactions"])
	assert.Positive(t, r.Body["total_documents"])
	assert.GreaterOrEqual(t, r.Body["cache_keys"], 0.0)
}

// test_postgres_data_integrity: the row has the user and exactly the amount sent.
func postgresDataIntegrity(t *testing.T, e env) {
	b, c := e.b, client(t, e.tg)
	id := writeTransaction(t, c, "user_006", 123.45, "purchase").Body["transaction_id"]
	var user, amount, txType string
	require.NoError(t, testenv.QueryRow(b.pg, "SELECT user_id, amount::text, transaction_type FROM transactions WHERE id = $1",
		[]any{id}, &user, &amount, &txType))
	assert.Equal(t, "user_006", user)
	assert.Equal(t, "123.45", amount)
	assert.Equal(t, "purchase", txType)
}

// test_mongodb_data_persistence: the document is in MongoDB, in the original's shape.
func mongoDBDataPersistence(t *testing.T, e env) {
	b, c := e.b, client(t, e.tg)
	writeDocument(t, c, "test_doc_001", map[string]any{"field1": "value1", "field2": 42})
	var doc struct {
		Key       string    `bson:"key"`
		Data      bson.M    `bson:"data"`
		CreatedAt time.Time `bson:"created_at"`
	}
	require.NoError(t, mongoCollection(t, b).FindOne(context.Background(), bson.D{{Key: "key", Value: "test_doc_001"}}).Decode(&doc))
	assert.Equal(t, "test_doc_001", doc.Key)
	assert.Equal(t, bson.M{"field1": "value1", "field2": int32(42)}, doc.Data)
	assert.False(t, doc.CreatedAt.IsZero())
}

// test_read_nonexistent_transaction
func readMissingTransactions(t *testing.T, e env) {
	r := client(t, e.tg).Get("/read/transaction/nonexistent_user_999")
	require.Equal(t, http.StatusOK, r.Status)
	assert.Equal(t, map[string]any{"success": false, "key": "nonexistent_user_999", "value": nil, "source": "postgres",
		"message": "No transactions found"}, r.Body)
}

// test_read_nonexistent_document, with the not-found message also where it belongs.
func readMissingDocument(t *testing.T, e env) {
	r := client(t, e.tg).Get("/read/document/nonexistent_doc_999")
	require.Equal(t, http.StatusOK, r.Status)
	assert.Equal(t, map[string]any{"success": false, "key": "nonexistent_doc_999", "data": map[string]any{"message": "Document not found"},
		"from_cache": false, "stored_in": "MongoDB", "message": "Document not found"}, r.Body)
}

// test_concurrent_writes_different_dbs, made concurrent: 10 transactions and 10 documents
// at once all land.
func writesToBothDatabases(t *testing.T, e env) {
	tg := e.tg
	before := statsOf(t, client(t, tg))
	var wg sync.WaitGroup
	statuses := make(chan int, 20)
	for i := range 10 {
		wg.Go(func() {
			statuses <- post(client(t, tg), "/write/transaction",
				map[string]any{"user_id": fmt.Sprint("user_c", i), "amount": 10 + i, "transaction_type": "purchase"}).Status
		})
		wg.Go(func() {
			statuses <- post(client(t, tg), "/write/document", map[string]any{"key": fmt.Sprint("doc_c", i), "data": map[string]any{"index": i}}).Status
		})
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		require.Equal(t, http.StatusOK, s)
	}
	after := statsOf(t, client(t, tg))
	assert.Equal(t, 10.0, delta(before, after, "total_transactions"))
	assert.Equal(t, 10.0, delta(before, after, "total_documents"))
}

// test_cache_ttl_behavior, with the TTL itself checked: a cached list lives
// TRANSACTION_CACHE_TTL (60 s by default), then reads go to PostgreSQL again.
func TestTransactionCacheTTL(t *testing.T) {
	b := shared(t)
	c := client(t, start(t, b))
	writeTransaction(t, c, "user_ttl", 10, "t")
	assert.Equal(t, "postgres", c.Get("/read/transaction/user_ttl").Body["source"])
	assert.Equal(t, "cache", c.Get("/read/transaction/user_ttl").Body["source"])
	opt, err := redis.ParseURL(b.redis)
	require.NoError(t, err)
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ttl := rdb.PTTL(context.Background(), l8.TransactionsCacheKey("user_ttl")).Val()
	assert.Greater(t, ttl, 55*time.Second)
	assert.LessOrEqual(t, ttl, 60*time.Second)

	short := shared(t)
	c = client(t, start(t, short, func(cfg *l8.Config) { cfg.TransactionCacheTTL = time.Second }))
	writeTransaction(t, c, "user_ttl", 10, "t")
	// Every read from PostgreSQL fills the cache for 1 s, and hits do not extend it: polling
	// sees a hit, then the fill expiring.
	testenv.WaitFor(t, 5*time.Second, "the list to be cached", func() bool {
		return c.Get("/read/transaction/user_ttl").Body["source"] == "cache"
	})
	testenv.WaitFor(t, 5*time.Second, "the cached list to expire", func() bool {
		return c.Get("/read/transaction/user_ttl").Body["source"] == "postgres"
	})
}

// ---------------------------------------------------------------------------------------
// What the original got wrong (reference §3.2.9, §3.3)

// A new transaction invalidates its user's cached list at once (the original served the
// old list for up to 60 s).
func newTransactionInvalidatesList(t *testing.T, e env) {
	c := client(t, e.tg)
	writeTransaction(t, c, "user_inv", 1, "a")
	c.Get("/read/transaction/user_inv")
	require.Equal(t, "cache", c.Get("/read/transaction/user_inv").Body["source"])
	writeTransaction(t, c, "user_inv", 2, "b")
	r := c.Get("/read/transaction/user_inv")
	assert.Equal(t, "postgres", r.Body["source"])
	assert.Len(t, r.Body["value"], 2)
	assert.Equal(t, "cache", c.Get("/read/transaction/user_inv").Body["source"])
}

// Amounts are kept exact to the cent, whatever form they are sent in.
func amountsAreExact(t *testing.T, e env) {
	b, c := e.b, client(t, e.tg)
	for _, tc := range []struct {
		sent   string // the JSON text of the amount
		stored string
	}{
		{`0.1`, "0.10"},
		{`0.2`, "0.20"},
		{`123.45`, "123.45"},
		{`-0.5`, "-0.50"},
		{`1e2`, "100.00"},
		{`100.000`, "100.00"},
		{`"12.34"`, "12.34"},
		{`" 7 "`, "7.00"},
		{`99999999.99`, "99999999.99"},
		{`-99999999.99`, "-99999999.99"},
		{`0`, "0.00"},
		{`1234567.89`, "1234567.89"},
	} {
		user := "exact-" + strings.Trim(tc.sent, `" `)
		r := c.Do(http.MethodPost, "/write/transaction", []byte(`{"user_id":"`+user+`","amount":`+tc.sent+`,"transaction_type":"t"}`))
		require.Equal(t, http.StatusOK, r.Status, "%s: %s", tc.sent, r.Raw)
		var stored string
		require.NoError(t, testenv.QueryRow(b.pg, "SELECT amount::text FROM transactions WHERE id = $1", []any{r.Body["transaction_id"]}, &stored))
		assert.Equal(t, tc.stored, stored, tc.sent)
		for range 2 { // from PostgreSQL, then from the cache
			read := c.Get("/read/transaction/" + user)
			assert.Contains(t, string(read.Raw), `"amount":`+tc.stored+`,`, tc.sent)
		}
	}
	// The sum of the stored amounts is exact too (0.1 + 0.2 is 0.30, not 0.30000000000000004).
	var sum string
	require.NoError(t, testenv.QueryRow(b.pg, "SELECT sum(amount)::text FROM transactions WHERE user_id IN ('exact-0.1', 'exact-0.2')", nil, &sum))
	assert.Equal(t, "0.30", sum)
}

// Bad transactions get a 422 that names every problem, and store nothing (the original
// answered 500 with the database's text for over-long fields and large amounts).
func transactionValidation(t *testing.T, e env) {
	b, c := e.b, client(t, e.tg)
	before := countTransactions(t, b)
	long := func(n int) string { return strings.Repeat("x", n) }
	for _, tc := range []struct {
		name, body string
		locs       []string // the fields the 422 must name
	}{
		{"three decimals", `{"user_id":"u","amount":1.005,"transaction_type":"t"}`, []string{"amount"}},
		{"beyond DECIMAL(10,2)", `{"user_id":"u","amount":100000000,"transaction_type":"t"}`, []string{"amount"}},
		{"huge exponent", `{"user_id":"u","amount":1e999999999,"transaction_type":"t"}`, []string{"amount"}},
		{"negative beyond range", `{"user_id":"u","amount":-100000000.00,"transaction_type":"t"}`, []string{"amount"}},
		{"not a number", `{"user_id":"u","amount":"abc","transaction_type":"t"}`, []string{"amount"}},
		{"NaN", `{"user_id":"u","amount":"NaN","transaction_type":"t"}`, []string{"amount"}},
		{"infinity", `{"user_id":"u","amount":"Infinity","transaction_type":"t"}`, []string{"amount"}},
		{"hex float", `{"user_id":"u","amount":"0x1p3","transaction_type":"t"}`, []string{"amount"}},
		{"bool amount", `{"user_id":"u","amount":true,"transaction_type":"t"}`, []string{"amount"}},
		{"null amount", `{"user_id":"u","amount":null,"transaction_type":"t"}`, []string{"amount"}},
		{"missing amount", `{"user_id":"u","transaction_type":"t"}`, []string{"amount"}},
		{"256-character user", `{"user_id":"` + long(256) + `","amount":1,"transaction_type":"t"}`, []string{"user_id"}},
		{"empty user", `{"user_id":"","amount":1,"transaction_type":"t"}`, []string{"user_id"}},
		{"user with slash", `{"user_id":"a/b","amount":1,"transaction_type":"t"}`, []string{"user_id"}},
		{"user with NUL", `{"user_id":"a\u0000b","amount":1,"transaction_type":"t"}`, []string{"user_id"}},
		{"numeric user", `{"user_id":7,"amount":1,"transaction_type":"t"}`, []string{"user_id"}},
		{"51-character type", `{"user_id":"u","amount":1,"transaction_type":"` + long(51) + `"}`, []string{"transaction_type"}},
		{"empty type", `{"user_id":"u","amount":1,"transaction_type":""}`, []string{"transaction_type"}},
		{"type with NUL", `{"user_id":"u","amount":1,"transaction_type":"a\u0000"}`, []string{"transaction_type"}},
		{"everything wrong", `{"user_id":"","amount":0.001,"transaction_type":"` + long(51) + `"}`, []string{"user_id", "amount", "transaction_type"}},
		{"not an object", `[1]`, []string{}},
		{"malformed", `{"user_id":`, []string{}},
	} {
		r := c.Do(http.MethodPost, "/write/transaction", []byte(tc.body))
		if !assert.Equal(t, http.StatusUnprocessableEntity, r.Status, "%s: %s", tc.name, r.Raw) {
			continue
		}
		var locs []string
		for _, item := range r.Body["detail"].([]any) {
			loc := item.(map[string]any)["loc"].([]any)
			if len(loc) == 2 {
				if f, ok := loc[1].(string); ok {
					locs = append(locs, f)
				}
			}
		}
		if len(tc.locs) > 0 {
			assert.Equal(t, tc.locs, locs, tc.name)
		}
	}
	assert.Equal(t, before, countTransactions(t, b), "nothing was stored")

	// The limits themselves are accepted.
	writeTransaction(t, c, long(255), "99999999.99", long(50))
	r := c.Get("/read/transaction/" + long(255))
	assert.Equal(t, true, r.Body["success"])
	assert.Equal(t, http.StatusUnprocessableEntity, c.Get("/read/transaction/"+long(256)).Status)
}

// Bad documents get a 422 (or 413) and store nothing.
func documentValidation(t *testing.T, e env) {
	b, c := e.b, client(t, e.tg)
	before := countDocuments(t, b, bson.D{})
	for _, tc := range []struct {
		name, body string
		status     int
	}{
		{"data is an array", `{"key":"invalid_doc","data":[1,2]}`, 422},
		{"data is a string", `{"key":"invalid_doc","data":"x"}`, 422},
		{"data is null", `{"key":"invalid_doc","data":null}`, 422},
		{"data missing", `{"key":"invalid_doc"}`, 422},
		{"key missing", `{"data":{}}`, 422},
		{"key with slash", `{"key":"a/b","data":{}}`, 422},
		{"256-character key", `{"key":"` + strings.Repeat("k", 256) + `","data":{}}`, 422},
		{"operator field", `{"key":"invalid_doc","data":{"$set":{"a":1}}}`, 422},
		{"dotted field", `{"key":"invalid_doc","data":{"a":{"b.c":1}}}`, 422},
		{"array in array", `{"key":"invalid_doc","data":{"m":[[1,2],[3,4]]}}`, 422},
		{"integer beyond 64 bits", `{"key":"invalid_doc","data":{"n":123456789012345678901234567890}}`, 422},
		{"too deep", `{"key":"invalid_doc","data":` + strings.Repeat(`{"a":`, 100) + `1` + strings.Repeat(`}`, 100) + `}`, 422},
		{"over the value limit", `{"key":"invalid_doc","data":{"big":"` + strings.Repeat("x", 1<<20) + `"}}`, 413},
	} {
		r := c.Do(http.MethodPost, "/write/document", []byte(tc.body))
		assert.Equal(t, tc.status, r.Status, "%s: %.300s", tc.name, r.Raw)
		assert.NotNil(t, r.Body["detail"], tc.name)
	}
	r := c.Do(http.MethodPost, "/write/document", []byte(`{"key":"invalid_doc","data":{"a":{"$x":1}}}`))
	assert.Equal(t, []any{"body", "data", "a", "$x"}, r.Body["detail"].([]any)[0].(map[string]any)["loc"])
	assert.Equal(t, before, countDocuments(t, b, bson.D{}), "nothing was stored")
}

// An empty document is a document, and is cached like any other (the original's cached
// "{}" read back as a miss, every time).
func emptyDocumentIsCached(t *testing.T, e env) {
	c := client(t, e.tg)
	writeDocument(t, c, "empty", map[string]any{})
	assert.Equal(t, false, c.Get("/read/document/empty").Body["from_cache"])
	r := c.Get("/read/document/empty")
	assert.Equal(t, true, r.Body["from_cache"])
	assert.Equal(t, map[string]any{}, r.Body["data"])
}

// /write and /write/document share the documents: a record is the document
// {"value": value}, and any other document reads through /read/{key} as its JSON.
func recordsAreDocuments(t *testing.T, e env) {
	c := client(t, e.tg)
	c.MustWrite("rec", "plain value")
	r := c.Get("/read/document/rec")
	assert.Equal(t, map[string]any{"value": "plain value"}, r.Body["data"])

	writeDocument(t, c, "doc", map[string]any{"name": "Laptop"})
	r = c.Read("doc")
	assert.Equal(t, true, r.Body["success"])
	assert.Equal(t, `{"name":"Laptop"}`, r.Body["value"])
	assert.Equal(t, "MongoDB", r.Body["stored_in"])

	// A write through either endpoint invalidates the copy both read paths share.
	c.Read("rec")
	require.Equal(t, true, c.Read("rec").Body["from_cache"])
	writeDocument(t, c, "rec", map[string]any{"value": "via document"})
	r = c.Read("rec")
	assert.Equal(t, "via document", r.Body["value"])
	assert.Equal(t, false, r.Body["from_cache"])
}

// Concurrent first writes of one new document key leave exactly one document (the
// original had no unique index and could store several), and every write is acknowledged.
func concurrentUpsertsOfOneNewKey(t *testing.T, e env) {
	b, tg := e.b, e.tg
	const writers = 40
	var wg sync.WaitGroup
	statuses := make(chan int, writers)
	for i := range writers {
		wg.Go(func() {
			statuses <- post(client(t, tg), "/write/document", map[string]any{"key": "contended", "data": map[string]any{"writer": i}}).Status
		})
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		require.Equal(t, http.StatusOK, s)
	}
	assert.Equal(t, int64(1), countDocuments(t, b, bson.D{{Key: "key", Value: "contended"}}))
	r := client(t, tg).Get("/read/document/contended")
	assert.Contains(t, r.Body["data"], "writer")
}

// ---------------------------------------------------------------------------------------
// Faults: each store fails alone.

// MongoDB stopped: document endpoints answer 503 fast, transaction endpoints keep
// working, /health says which store is down. MongoDB back: the same process serves
// documents again, and nothing acknowledged was lost.
func TestMongoDBOutage(t *testing.T) {
	srv := testenv.StartMongo(t)
	b := shared(t)
	b.mongo, b.mongoDB = srv.URL(), "polyglot_db"
	// A 1 s bound instead of the default 2 s keeps this test short; both are within FastFail.
	c := client(t, start(t, b, func(cfg *l8.Config) { cfg.Mongo.Timeout = time.Second }))
	writeDocument(t, c, "before", map[string]any{"n": 1})
	c.MustWrite("cached", "v")
	c.Read("cached") // fills the cache

	srv.Stop(t)
	layertest.AssertFastUnavailable(t, "write document", func() layertest.Response {
		return post(c, "/write/document", map[string]any{"key": "during", "data": map[string]any{}})
	})
	layertest.AssertFastUnavailable(t, "read document", func() layertest.Response { return c.Get("/read/document/before") })
	layertest.AssertFastUnavailable(t, "write", func() layertest.Response { return c.Write("during", "v") })
	layertest.AssertFastUnavailable(t, "read", func() layertest.Response { return c.Read("before") })
	r := c.Get("/read/document/before")
	assert.Equal(t, "MongoDB unavailable", r.Body["detail"])
	cached := c.Read("cached")
	assert.Equal(t, http.StatusOK, cached.Status, "a cached document is still served")
	assert.Equal(t, true, cached.Body["from_cache"])

	writeTransaction(t, c, "user_m", 5, "t")
	assert.Equal(t, true, c.Get("/read/transaction/user_m").Body["success"])

	start := time.Now()
	h := c.Get("/health")
	assert.Less(t, time.Since(start), layertest.FastFail)
	assert.Equal(t, http.StatusServiceUnavailable, h.Status)
	assert.Equal(t, "unhealthy", h.Body["status"])
	assert.Equal(t, map[string]any{"PostgreSQL": "healthy", "MongoDB": "unavailable", "Redis": "healthy"}, h.Body["components"])
	assert.Equal(t, "Service unhealthy: MongoDB unavailable", h.Body["detail"])
	assert.NotEqual(t, "closed", h.Body["circuit_breakers"].(map[string]any)["MongoDB"], "MongoDB's calls are refused, not waited on")
	assert.Equal(t, "closed", h.Body["circuit_breakers"].(map[string]any)["PostgreSQL"])
	layertest.AssertNoLeak(t, h)
	st := c.Get("/stats")
	assert.Equal(t, http.StatusOK, st.Status)
	assert.Nil(t, st.Body["total_documents"])
	assert.Equal(t, 1.0, st.Body["total_transactions"])

	srv.Start(t)
	testenv.WaitFor(t, 15*time.Second, "documents to be served again", func() bool {
		return c.Get("/health").Status == http.StatusOK
	})
	assert.Equal(t, "closed", c.Get("/stats").Body["circuit_breakers"].(map[string]any)["MongoDB"])
	r = c.Get("/read/document/before")
	assert.Equal(t, map[string]any{"n": 1.0}, r.Body["data"], "acknowledged before the outage, kept")
	writeDocument(t, c, "after", map[string]any{"n": 2})
	assert.Equal(t, true, c.Get("/read/document/after").Body["success"])
}

// PostgreSQL stopped: transaction endpoints answer 503 fast, documents keep working.
func TestPostgresOutage(t *testing.T) {
	pg := testenv.StartPostgres(t, testenv.PGOptions{})
	b := shared(t)
	b.pg = pg.CreateDatabase(t)
	c := client(t, start(t, b))
	writeTransaction(t, c, "user_p", 1, "t")

	pg.Stop(t)
	layertest.AssertFastUnavailable(t, "write transaction", func() layertest.Response {
		return post(c, "/write/transaction", map[string]any{"user_id": "user_p", "amount": 2, "transaction_type": "t"})
	})
	layertest.AssertFastUnavailable(t, "read transactions", func() layertest.Response { return c.Get("/read/transaction/user_p") })
	assert.Equal(t, "PostgreSQL unavailable", c.Get("/read/transaction/user_p").Body["detail"])
	writeDocument(t, c, "doc_p", map[string]any{"ok": true})
	assert.Equal(t, true, c.Get("/read/document/doc_p").Body["success"])
	c.MustWrite("rec_p", "v")
	assert.Equal(t, "v", c.Read("rec_p").Body["value"])
	h := c.Get("/health")
	assert.Equal(t, http.StatusServiceUnavailable, h.Status)
	assert.Equal(t, map[string]any{"PostgreSQL": "unavailable", "MongoDB": "healthy", "Redis": "healthy"}, h.Body["components"])
	layertest.AssertNoLeak(t, h)

	pg.Start(t)
	testenv.WaitFor(t, 15*time.Second, "transactions to be served again", func() bool {
		return c.Get("/health").Status == http.StatusOK
	})
	writeTransaction(t, c, "user_p", 3, "t")
	assert.Len(t, c.Get("/read/transaction/user_p").Body["value"], 2)
}

// Redis stopped: reads are served from PostgreSQL and MongoDB, writes succeed, /health is
// 200 "degraded". Redis back: the same process caches again.
func TestRedisOutage(t *testing.T) {
	rs := testenv.StartRedis(t)
	b := shared(t)
	b.redis = rs.URL(0)
	c := client(t, start(t, b))
	writeTransaction(t, c, "user_r", 1, "t")
	writeDocument(t, c, "doc_r", map[string]any{"v": 1})

	rs.Stop(t)
	start := time.Now()
	writeTransaction(t, c, "user_r", 2, "t")
	writeDocument(t, c, "doc_r", map[string]any{"v": 2})
	c.MustWrite("rec_r", "v")
	txns := c.Get("/read/transaction/user_r")
	doc := c.Get("/read/document/doc_r")
	rec := c.Read("rec_r")
	assert.Less(t, time.Since(start), layertest.FastFail)
	assert.Equal(t, "postgres", txns.Body["source"])
	assert.Len(t, txns.Body["value"], 2)
	assert.Equal(t, map[string]any{"v": 2.0}, doc.Body["data"])
	assert.Equal(t, false, doc.Body["from_cache"])
	assert.Equal(t, "v", rec.Body["value"])
	h := c.Get("/health")
	assert.Equal(t, http.StatusOK, h.Status)
	assert.Equal(t, "degraded", h.Body["status"])
	// Unavailable, or skipped once its guard has seen it fail three times.
	assert.Contains(t, []any{"unavailable", "skipped"}, h.Body["components"].(map[string]any)["Redis"])
	st := c.Get("/stats")
	assert.Equal(t, http.StatusOK, st.Status)
	assert.Equal(t, false, st.Body["cache_available"])
	assert.Nil(t, st.Body["cache_keys"])

	rs.Start(t)
	testenv.WaitFor(t, 5*time.Second, "the cache to be used again", func() bool {
		return c.Get("/read/document/doc_r").Body["from_cache"] == true
	})
	assert.Equal(t, map[string]any{"v": 2.0}, c.Get("/read/document/doc_r").Body["data"])
	assert.Equal(t, "healthy", c.Get("/health").Body["status"])
}
