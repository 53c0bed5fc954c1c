package l8

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dblayers/dblayers/internal/breaker"
	"github.com/dblayers/dblayers/internal/pgstore"
	"github.com/dblayers/dblayers/internal/record"
)

// TransactionsSchema is the original's transactions table, with the timestamp NOT NULL,
// a 64-bit id, and one index that serves the only query (a user's transactions, newest
// first) instead of the original's two single-column ones.
var TransactionsSchema = []string{`
CREATE TABLE IF NOT EXISTS transactions (
	id               BIGSERIAL      PRIMARY KEY,
	user_id          VARCHAR(255)   NOT NULL,
	amount           DECIMAL(10, 2) NOT NULL,
	transaction_type VARCHAR(50)    NOT NULL,
	created_at       TIMESTAMP      NOT NULL DEFAULT CURRENT_TIMESTAMP
)`,
	`CREATE INDEX IF NOT EXISTS idx_transactions_user_created ON transactions (user_id, created_at DESC, id DESC)`,
}

// Transaction is one row of transactions, as the API shows it.
type Transaction struct {
	ID              int64  `json:"id"`
	UserID          string `json:"user_id"`
	Amount          Amount `json:"amount"`
	TransactionType string `json:"transaction_type"`
	CreatedAt       string `json:"created_at"` // naive ISO-8601, as record.Timestamp
}

// Ledger keeps transactions in PostgreSQL: insert-only, read per user. Its calls go
// through a guard: once PostgreSQL has failed a few times in a row they are refused at once
// (a fast 503) until a probe finds it back.
type Ledger struct {
	conns pgstore.Conns
	guard *breaker.Guard
}

// NewLedger returns the ledger on conns, guarded with settings.
func NewLedger(conns pgstore.Conns, settings breaker.Settings) (*Ledger, error) {
	guard, err := breaker.NewGuard("PostgreSQL", settings, nil)
	if err != nil {
		return nil, err
	}
	return &Ledger{conns: conns, guard: guard}, nil
}

// State is the guard's state.
func (l *Ledger) State() breaker.State { return l.guard.State() }

// withConn runs fn on a connection (bounded by the query timeout) through the guard, and
// classifies its error.
func (l *Ledger) withConn(ctx context.Context, fn func(context.Context, *pgx.Conn) error) error {
	return l.guard.Do(func() error { return classify(l.conns.WithConn(ctx, fn)) })
}

// Insert stores a transaction and returns its id. The amount travels as decimal text, so
// it is stored exactly.
func (l *Ledger) Insert(ctx context.Context, userID string, amount Amount, txType string) (int64, error) {
	var id int64
	err := l.withConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, `INSERT INTO transactions (user_id, amount, transaction_type)
VALUES ($1, $2::numeric, $3) RETURNING id`, userID, amount.String(), txType).Scan(&id)
	})
	if err != nil {
		return 0, fmt.Errorf("insert transaction of %q: %w", userID, err)
	}
	return id, nil
}

// List returns userID's most recent transactions, newest first, at most limit of them.
// The amount is read as text, never through a float.
func (l *Ledger) List(ctx context.Context, userID string, limit int) ([]Transaction, error) {
	var txns []Transaction
	err := l.withConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT id, user_id, amount::text, transaction_type, created_at
FROM transactions WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2`, userID, limit)
		if err != nil {
			return err
		}
		txns, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Transaction, error) {
			var (
				t       Transaction
				amount  string
				created time.Time
			)
			if err := row.Scan(&t.ID, &t.UserID, &amount, &t.TransactionType, &created); err != nil {
				return t, err
			}
			a, err := ParseAmount(amount)
			if err != nil {
				return t, fmt.Errorf("amount %q of transaction %d: %w", amount, t.ID, err)
			}
			t.Amount, t.CreatedAt = a, record.Timestamp(created)
			return t, nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list transactions of %q: %w", userID, err)
	}
	return txns, nil
}

// Count is the number of transactions.
func (l *Ledger) Count(ctx context.Context) (int64, error) {
	var n int64
	err := l.withConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT count(*) FROM transactions`).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("count transactions: %w", err)
	}
	return n, nil
}

// Ping checks that PostgreSQL answers, through the guard: refused at once while it is
// open, and the probe once the probe interval has passed.
func (l *Ledger) Ping(ctx context.Context) error {
	return l.guard.Do(func() error { return classify(pgstore.NewStore(l.conns).Ping(ctx)) })
}

// classify names PostgreSQL in outages ("PostgreSQL unavailable"): this layer has two
// databases, and "Database unavailable" would not say which.
func classify(err error) error {
	err = pgstore.Classify(err)
	if record.IsUnavailable(err) {
		return record.Unavailable("PostgreSQL", err)
	}
	return err
}
