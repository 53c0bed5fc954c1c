package l8

import (
	"encoding/json"
	"net/http"

	"github.com/dblayers/dblayers/internal/apidoc"
	"github.com/dblayers/dblayers/internal/breaker"
)

// The API's description, served at /openapi.json, /docs and /redoc.
var (
	apiInfo = apidoc.Info{
		Title: "L8 · polyglot persistence",
		Description: "Each kind of data in the store that suits it: transactions in PostgreSQL, documents in " +
			"MongoDB, a Redis cache in front of both. The plain /write and /read/{key} use the document store.",
	}
	opWrite = apidoc.WriteOp("Stores {\"value\": …} as the key's document in MongoDB.",
		RecordWriteResponse{WriteResponse: apidoc.WriteOK(MsgDocumentWritten), StoredIn: storedInMongo})
	opRead = apidoc.ReadOp("Reads the key's document (through the cache); value is its \"value\" field.",
		RecordReadResponse{ReadFields: apidoc.Found(), StoredIn: storedInMongo})
	opWriteTransaction = apidoc.Operation{
		Summary:     "Record a transaction",
		Description: "Inserts a transaction of the user in PostgreSQL and invalidates the user's cached list.",
		Body: &apidoc.Body{
			Schema: apidoc.Object(apidoc.Schema{
				"user_id": apidoc.KeySchema(),
				"amount": apidoc.Schema{"type": []string{"number", "string"},
					"description": "at most 10 digits, 2 of them decimals (at most 99999999.99); a numeric string is read exactly"},
				"transaction_type": apidoc.Schema{"type": "string", "minLength": 1, "maxLength": MaxTransactionTypeLength},
			}, "user_id", "amount", "transaction_type"),
			Example: map[string]any{"user_id": "user:1", "amount": 19.99, "transaction_type": "purchase"},
		},
		OK: TransactionWriteResponse{Success: true, TransactionID: 42, Message: MsgTransactionWritten, StoredIn: storedInPG},
	}
	opReadTransactions = apidoc.Operation{
		Summary:     "List a user's transactions",
		Description: "The user's newest transactions (at most TRANSACTION_LIST_LIMIT), through the cache. None: 200 with success false.",
		OK:          TransactionsResponse{Success: true, Key: "user:1", Value: []Transaction{}, Source: storedInPG},
	}
	opWriteDocument = apidoc.Operation{
		Summary:     "Store a document",
		Description: "Stores data, any JSON object, as the key's document in MongoDB.",
		Body: &apidoc.Body{
			Schema:  apidoc.Object(apidoc.Schema{"key": apidoc.KeySchema(), "data": apidoc.Schema{"type": "object"}}, "key", "data"),
			Example: map[string]any{"key": "user:1", "data": map[string]any{"name": "Alice", "tags": []string{"admin"}}},
		},
		OK: DocumentResponse{Success: true, Key: "user:1", Data: json.RawMessage(`{"name":"Alice"}`), StoredIn: storedInMongo},
	}
	opReadDocument = apidoc.Operation{
		Summary:     "Read a document",
		Description: "The key's document, through the cache. None: 200 with success false.",
		OK:          DocumentResponse{Success: true, Key: "user:1", Data: json.RawMessage(`{"name":"Alice"}`), FromCache: true, StoredIn: storedInCache},
	}
	opHealth = apidoc.Operation{
		Summary: "Health check",
		Description: "PostgreSQL and MongoDB must answer; without Redis (unavailable, or skipped after it failed) the status is degraded. " +
			"circuit_breakers says which stores are refused or skipped without being called.",
		OK: Health{Status: "healthy", Layer: Layer, Databases: []string{"PostgreSQL", "MongoDB", "Redis"},
			Components:      map[string]string{"PostgreSQL": "healthy", "MongoDB": "healthy", "Redis": "healthy"},
			CircuitBreakers: map[string]breaker.State{"PostgreSQL": breaker.Closed, "MongoDB": breaker.Closed, "Redis": breaker.Closed}},
		Errors: []apidoc.Answer{{Status: http.StatusServiceUnavailable, Body: Health{Status: "unhealthy", Layer: Layer,
			Databases: []string{"PostgreSQL", "MongoDB", "Redis"}, Components: map[string]string{"PostgreSQL": "healthy", "MongoDB": "unavailable", "Redis": "healthy"},
			CircuitBreakers: map[string]breaker.State{"PostgreSQL": breaker.Closed, "MongoDB": breaker.Open, "Redis": breaker.Closed},
			Detail:          "Service unhealthy: MongoDB unavailable"}}},
	}
	opStats = apidoc.StatsOp("Pool and connection sizes, stored counts and the cache's counters.", Stats{})
)
