// Package l8 is layer 8, polyglot persistence: each kind of data in the store that suits
// it. Financial transactions go to PostgreSQL (exact DECIMAL amounts, insert-only, read per
// user), free-form JSON documents to MongoDB (a unique index on key), and reads of both are
// cached in Redis with lease-guarded cache-aside. The common POST /write and GET /read/{key}
// keep records as documents. Each store fails alone: without Redis reads go to the
// databases, without MongoDB the transaction endpoints keep working, and the other way
// round (see README.md).
package l8

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5/middleware"

	"github.com/dblayers/dblayers/internal/apidoc"
	"github.com/dblayers/dblayers/internal/breaker"
	"github.com/dblayers/dblayers/internal/cache"
	"github.com/dblayers/dblayers/internal/docstore"
	"github.com/dblayers/dblayers/internal/httpapi"
	"github.com/dblayers/dblayers/internal/pgstore"
	"github.com/dblayers/dblayers/internal/record"
	"github.com/dblayers/dblayers/internal/redisclient"
)

// Layer is the health "layer" string.
const Layer = "8-polyglot-persistence"

// Where reads come from, in the original's words.
const (
	storedInMongo = "MongoDB"
	storedInCache = "Redis (cache)"
	storedInPG    = "PostgreSQL"
	sourcePG      = "postgres"
	sourceCache   = "cache"
)

// Messages, as in the original where it had them.
const (
	MsgTransactionWritten = "Transaction written to PostgreSQL"
	MsgDocumentWritten    = "Document written to MongoDB"
	MsgNoTransactions     = "No transactions found"
	MsgDocumentNotFound   = "Document not found"
)

// Config is L8's environment. The first five variables and their defaults are the
// original's; the rest are new.
type Config struct {
	Server        httpapi.ServerConfig
	PostgresURL   string        `env:"POSTGRES_URL" default:"postgresql://dbuser:dbpassword@localhost:5449/transactional_db"`
	MongoURL      string        `env:"MONGODB_URL" default:"mongodb://mongouser:mongopassword@localhost:27017/"`
	RedisURL      string        `env:"REDIS_URL" default:"redis://localhost:6386"`
	CacheTTL      time.Duration `env:"CACHE_TTL" default:"300s"`               // how long a cached document lives
	MongoDatabase string        `env:"MONGODB_DATABASE" default:"polyglot_db"` // database of the documents collection
	// How long a user's cached transaction list lives (the original hard-coded 60 s). Every
	// new transaction of the user invalidates it at once.
	TransactionCacheTTL time.Duration `env:"TRANSACTION_CACHE_TTL" default:"60s"`
	// GET /read/transaction/{user_id} returns at most this many of the user's most recent
	// transactions (the original returned all of them, however many).
	TransactionListLimit int `env:"TRANSACTION_LIST_LIMIT" default:"1000"`
	// A store that fails BreakerThreshold times in a row (PostgreSQL or MongoDB: timeouts,
	// refused or broken connections) is refused at once, a fast 503, and probed by one call
	// every BreakerProbe until it answers again. Redis, optional, is skipped the same way
	// (internal/redisclient).
	BreakerThreshold int           `env:"STORE_BREAKER_THRESHOLD" default:"3"`
	BreakerProbe     time.Duration `env:"STORE_BREAKER_PROBE_INTERVAL" default:"1s"`
	Pool             pgstore.PoolConfig
	Mongo            docstore.Options
}

// Service is a running L8.
type Service struct {
	cfg      Config
	logger   *slog.Logger
	pool     *pgstore.Pool
	ledger   *Ledger
	docs     *docstore.Store
	rdb      *redisclient.Client
	docCache *cache.Leased[docstore.Document] // doc:{key}
	txnCache *cache.Leased[[]Transaction]     // transactions:{user_id}
	handler  http.Handler
}

// DocCacheKey is the Redis key of a cached document, as in the original.
func DocCacheKey(key string) string { return "doc:" + key }

// TransactionsCacheKey is the Redis key of a user's cached transaction list, as in the
// original.
func TransactionsCacheKey(userID string) string { return "transactions:" + userID }

// New connects to PostgreSQL and MongoDB (both required: start-up waits for them up to
// their start-up timeouts, then fails) and Redis (optional: without it reads go to the
// databases), creates the transactions table and the documents index, and returns the
// service.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Service, error) {
	if cfg.TransactionListLimit < 1 {
		return nil, fmt.Errorf("TRANSACTION_LIST_LIMIT=%d: want at least 1", cfg.TransactionListLimit)
	}
	guard := breaker.Settings{Threshold: uint32(max(cfg.BreakerThreshold, 0)), Timeout: cfg.BreakerProbe}
	rdb, err := redisclient.New(cfg.RedisURL)
	if err != nil {
		return nil, err
	}
	pool, err := pgstore.OpenPool(ctx, cfg.PostgresURL, cfg.Pool, TransactionsSchema...)
	if err != nil {
		rdb.Close()
		return nil, err
	}
	ledger, err := NewLedger(pool, guard)
	if err != nil {
		pool.Close()
		rdb.Close()
		return nil, err
	}
	cfg.Mongo.Breaker = guard
	docs, err := docstore.Open(ctx, cfg.MongoURL, cfg.MongoDatabase, cfg.Mongo)
	if err != nil {
		pool.Close()
		rdb.Close()
		return nil, err
	}
	s := &Service{
		cfg: cfg, logger: logger, pool: pool, ledger: ledger, docs: docs, rdb: rdb,
		docCache: cache.NewLeased[docstore.Document](rdb, cfg.CacheTTL, logger),
		txnCache: cache.NewLeased[[]Transaction](rdb, cfg.TransactionCacheTTL, logger),
	}
	r := apidoc.NewRouter(httpapi.Options{Layer: Layer, Logger: logger, Limits: cfg.Server.Limits()}, apiInfo)
	r.Post("/write", httpapi.Handle(s.writeRecord), opWrite)
	r.Get("/read/{key}", httpapi.Handle(s.readRecord), opRead)
	r.Post("/write/transaction", httpapi.Handle(s.writeTransaction), opWriteTransaction)
	r.Post("/write/document", httpapi.Handle(s.writeDocument), opWriteDocument)
	// The user id travels in the {key} parameter, so that it is decoded and checked like
	// every key (1 to 255 characters, no '/', no control characters).
	r.Get("/read/transaction/{key}", httpapi.Handle(s.readTransactions), opReadTransactions)
	r.Get("/read/document/{key}", httpapi.Handle(s.readDocument), opReadDocument)
	r.Get("/health", s.health, opHealth)
	r.Stats(httpapi.Handle(s.stats), opStats, "/stats")
	s.handler = r
	return s, nil
}

// Handler is the HTTP API.
func (s *Service) Handler() http.Handler { return s.handler }

// Close closes Redis, MongoDB, then the pool.
func (s *Service) Close() {
	s.rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.docs.Close(ctx)
	s.pool.Close()
}

// ---------------------------------------------------------------------------------------
// Transactions: PostgreSQL

// TransactionWriteResponse is the answer of POST /write/transaction.
type TransactionWriteResponse struct {
	Success       bool   `json:"success"`
	TransactionID int64  `json:"transaction_id"`
	Message       string `json:"message"`
	StoredIn      string `json:"stored_in"`
}

func (s *Service) writeTransaction(r *http.Request) (any, error) {
	req, err := decodeTransaction(r)
	if err != nil {
		return nil, err
	}
	id, err := s.ledger.Insert(r.Context(), req.UserID, req.Amount, req.TransactionType)
	if err != nil {
		return nil, err
	}
	// The original left the user's cached list stale for up to 60 s.
	s.txnCache.Invalidate(r.Context(), TransactionsCacheKey(req.UserID))
	return TransactionWriteResponse{Success: true, TransactionID: id, Message: MsgTransactionWritten, StoredIn: storedInPG}, nil
}

// TransactionsResponse is the answer of GET /read/transaction/{user_id}.
type TransactionsResponse struct {
	Success bool          `json:"success"`
	Key     string        `json:"key"`
	Value   []Transaction `json:"value"` // newest first; null when there are none
	Source  string        `json:"source"`
	Message *string       `json:"message"`
}

func (s *Service) readTransactions(r *http.Request) (any, error) {
	userID, err := httpapi.PathKey(r)
	if err != nil {
		return nil, err
	}
	txns, fromCache, err := s.txnCache.Lookup(r.Context(), TransactionsCacheKey(userID),
		func(ctx context.Context) ([]Transaction, error) {
			txns, err := s.ledger.List(ctx, userID, s.cfg.TransactionListLimit)
			if err == nil && len(txns) == 0 {
				return nil, record.ErrNotFound // an empty list is not cached
			}
			return txns, err
		})
	if errors.Is(err, record.ErrNotFound) {
		msg := MsgNoTransactions
		return TransactionsResponse{Key: userID, Source: sourcePG, Message: &msg}, nil
	}
	if err != nil {
		return nil, err
	}
	source := sourcePG
	if fromCache {
		source = sourceCache
	}
	return TransactionsResponse{Success: true, Key: userID, Value: txns, Source: source}, nil
}

// ---------------------------------------------------------------------------------------
// Documents: MongoDB

// DocumentResponse is the answer of POST /write/document and GET /read/document/{key}.
// For a missing document data is {"message": "Document not found"}, as in the original,
// and message says the same.
type DocumentResponse struct {
	Success   bool            `json:"success"`
	Key       string          `json:"key"`
	Data      json.RawMessage `json:"data"`
	FromCache bool            `json:"from_cache"`
	StoredIn  string          `json:"stored_in"`
	Message   *string         `json:"message"`
}

func (s *Service) writeDocument(r *http.Request) (any, error) {
	b, err := httpapi.DecodeBody(r)
	if err != nil {
		return nil, err
	}
	key, raw := b.Key("key"), b.Object("data")
	if err := b.Err(); err != nil {
		return nil, err
	}
	if max := s.cfg.Server.MaxValueBytes; max > 0 && int64(len(raw)) > max {
		return nil, httpapi.Errorf(http.StatusRequestEntityTooLarge, "Document exceeds the limit of %d bytes", max)
	}
	data, err := docstore.ParseData(raw)
	if err != nil {
		return nil, invalidData(err)
	}
	if err := s.putDocument(r.Context(), key, data); err != nil {
		return nil, err
	}
	return DocumentResponse{Success: true, Key: key, Data: raw, StoredIn: storedInMongo}, nil
}

func (s *Service) putDocument(ctx context.Context, key string, data docstore.Data) error {
	if err := s.docs.Put(ctx, key, data); err != nil {
		return err
	}
	s.docCache.Invalidate(ctx, DocCacheKey(key))
	return nil
}

// getDocument reads a document through the cache.
func (s *Service) getDocument(ctx context.Context, key string) (docstore.Document, bool, error) {
	return s.docCache.Lookup(ctx, DocCacheKey(key), func(ctx context.Context) (docstore.Document, error) {
		return s.docs.Get(ctx, key)
	})
}

func (s *Service) readDocument(r *http.Request) (any, error) {
	key, err := httpapi.PathKey(r)
	if err != nil {
		return nil, err
	}
	doc, fromCache, err := s.getDocument(r.Context(), key)
	if errors.Is(err, record.ErrNotFound) {
		msg := MsgDocumentNotFound
		return DocumentResponse{Key: key, Data: json.RawMessage(`{"message":"Document not found"}`), StoredIn: storedInMongo, Message: &msg}, nil
	}
	if err != nil {
		return nil, err
	}
	return DocumentResponse{Success: true, Key: key, Data: doc.Data, FromCache: fromCache, StoredIn: storedIn(fromCache)}, nil
}

func storedIn(fromCache bool) string {
	if fromCache {
		return storedInCache
	}
	return storedInMongo
}

// invalidData turns a document MongoDB could not store as sent into a 422.
func invalidData(err error) error {
	var ide *docstore.InvalidDataError
	if !errors.As(err, &ide) {
		return err
	}
	return &httpapi.ValidationError{Fields: []httpapi.FieldError{{
		Type: "value_error", Loc: append([]any{"body", "data"}, ide.Path...), Msg: "Value error, " + ide.Reason,
	}}}
}

// ---------------------------------------------------------------------------------------
// The common /write and /read/{key}: records kept as {"value": value} documents

// RecordWriteResponse is the answer of POST /write.
type RecordWriteResponse struct {
	httpapi.WriteResponse
	StoredIn string `json:"stored_in"`
}

func (s *Service) writeRecord(r *http.Request) (any, error) {
	req, _, err := httpapi.DecodeWrite(r)
	if err != nil {
		return nil, err
	}
	if err := s.putDocument(r.Context(), req.Key, docstore.ValueData(req.Value)); err != nil {
		return nil, err
	}
	return RecordWriteResponse{WriteResponse: httpapi.WriteResponse{Success: true, Key: req.Key, Message: MsgDocumentWritten}, StoredIn: storedInMongo}, nil
}

// RecordReadResponse is the answer of GET /read/{key}: the common read fields (value is
// the document's "value", or its JSON when the document has another shape; the timestamps
// are the document's) and where it came from.
type RecordReadResponse struct {
	httpapi.ReadFields
	FromCache bool   `json:"from_cache"`
	StoredIn  string `json:"stored_in"`
}

func (s *Service) readRecord(r *http.Request) (any, error) {
	key, err := httpapi.PathKey(r)
	if err != nil {
		return nil, err
	}
	doc, fromCache, err := s.getDocument(r.Context(), key)
	if errors.Is(err, record.ErrNotFound) {
		return RecordReadResponse{ReadFields: httpapi.NotFound(key, httpapi.MsgKeyNotFound), StoredIn: storedInMongo}, nil
	}
	if err != nil {
		return nil, err
	}
	return RecordReadResponse{ReadFields: httpapi.Found(docstore.RecordOf(doc)), FromCache: fromCache, StoredIn: storedIn(fromCache)}, nil
}

// ---------------------------------------------------------------------------------------
// Health and statistics

// Component states in /health: Redis also reads "skipped" while its guard refuses
// commands.
const (
	stateHealthy     = "healthy"
	stateUnavailable = "unavailable"
)

// Health is the answer of GET /health. Status is "healthy" when all three stores answer,
// "degraded" (still HTTP 200: every endpoint works, reads skip the cache) when only Redis
// does not, and "unhealthy" (HTTP 503, with detail) when PostgreSQL or MongoDB does not.
// CircuitBreakers says which stores are being refused (PostgreSQL, MongoDB) or skipped
// (Redis) without being called: "open" or "half_open".
type Health struct {
	Status          string                   `json:"status"`
	Layer           string                   `json:"layer"`
	Databases       []string                 `json:"databases"`
	Components      map[string]string        `json:"components"`
	CircuitBreakers map[string]breaker.State `json:"circuit_breakers"`
	Detail          string                   `json:"detail,omitempty"`
}

// health checks the three stores at once, each bounded by its own timeout.
func (s *Service) health(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	names := []string{"PostgreSQL", "MongoDB", "Redis"}
	checks := []func(context.Context) error{s.ledger.Ping, s.docs.Ping}
	errs := make([]error, len(checks))
	var redisState string
	var wg sync.WaitGroup
	for i, check := range checks {
		wg.Go(func() { errs[i] = check(ctx) })
	}
	wg.Go(func() { redisState = s.rdb.Health(ctx) })
	wg.Wait()

	h := Health{Status: stateHealthy, Layer: Layer, Databases: names, Components: map[string]string{"Redis": redisState},
		CircuitBreakers: s.breakers()}
	var down []string
	for i, err := range errs {
		h.Components[names[i]] = stateHealthy
		if err != nil {
			h.Components[names[i]] = stateUnavailable
			s.logger.Warn("health check failed", "request_id", middleware.GetReqID(ctx), "component", names[i], "error", err)
			down = append(down, names[i])
		}
	}
	status := http.StatusOK
	switch {
	case len(down) > 0:
		h.Status, h.Detail, status = "unhealthy", "Service unhealthy: "+strings.Join(down, " and ")+" unavailable", http.StatusServiceUnavailable
	case redisState != stateHealthy:
		h.Status = "degraded"
	}
	httpapi.WriteJSON(w, status, h)
}

// breakers are the states of the three stores' guards.
func (s *Service) breakers() map[string]breaker.State {
	return map[string]breaker.State{"PostgreSQL": s.ledger.State(), "MongoDB": s.docs.State(), "Redis": s.rdb.State()}
}

// Stats is the answer of /stats and /cache-stats: the original's five fields, live, and
// the cache's counters. A store that cannot be reached leaves its fields null instead of
// failing the whole answer.
type Stats struct {
	PostgresPoolSize     int32   `json:"postgres_pool_size"`  // open connections in the pool now
	MongoDBConnections   int64   `json:"mongodb_connections"` // open driver connections now (the original said 1)
	CacheKeys            *int64  `json:"cache_keys"`          // DBSIZE of the Redis database
	TotalTransactions    *int64  `json:"total_transactions"`
	TotalDocuments       *int64  `json:"total_documents"`
	CacheAvailable       bool    `json:"cache_available"`
	CacheSkipped         bool    `json:"cache_skipped"` // Redis failed and is skipped until a probe finds it back
	CacheHits            int64   `json:"cache_hits"`    // this process, documents and transaction lists
	CacheMisses          int64   `json:"cache_misses"`  // idem
	CacheHitRate         float64 `json:"cache_hit_rate"`
	InvalidationsPending int64   `json:"invalidations_pending"` // cache deletes waiting for Redis
	// How this process wrote documents: new keys go in batched inserts, the others upserts.
	DocumentWrites docstore.WriteCounts `json:"document_writes"`
	// The stores' guards, as in /health.
	CircuitBreakers map[string]breaker.State `json:"circuit_breakers"`
}

func (s *Service) stats(r *http.Request) (any, error) {
	ctx := r.Context()
	var (
		st               Stats
		wg               sync.WaitGroup
		keys, txns, docs int64
		kErr, tErr, dErr error
	)
	wg.Go(func() { keys, kErr = s.rdb.DBSize(ctx).Result() })
	wg.Go(func() { txns, tErr = s.ledger.Count(ctx) })
	wg.Go(func() { docs, dErr = s.docs.Count(ctx) })
	wg.Wait()
	if kErr == nil {
		st.CacheKeys, st.CacheAvailable = &keys, true
	}
	if tErr == nil {
		st.TotalTransactions = &txns
	} else {
		s.logger.Warn("stats: transactions", "error", tErr)
	}
	if dErr == nil {
		st.TotalDocuments = &docs
	} else {
		s.logger.Warn("stats: documents", "error", dErr)
	}
	st.PostgresPoolSize = s.pool.Stat().TotalConns()
	st.MongoDBConnections = s.docs.Connections()
	st.DocumentWrites = s.docs.WriteCounts()
	st.CacheSkipped = s.rdb.Skipped()
	st.CircuitBreakers = s.breakers()
	dh, dm := s.docCache.Counts()
	th, tm := s.txnCache.Counts()
	st.CacheHits, st.CacheMisses = dh+th, dm+tm
	st.CacheHitRate = cache.HitRate(st.CacheHits, st.CacheMisses)
	st.InvalidationsPending = s.docCache.Pending() + s.txnCache.Pending()
	return st, nil
}
