package l8

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/dblayers/dblayers/internal/httpapi"
)

// MaxTransactionTypeLength is the length of transactions.transaction_type, VARCHAR(50).
const MaxTransactionTypeLength = 50

// TransactionRequest is the body of POST /write/transaction.
type TransactionRequest struct {
	UserID          string
	Amount          Amount
	TransactionType string
}

// decodeTransaction reads and validates a transaction. Every problem is a 422 in the
// original's shape, reported together: user_id is checked like a key (1 to 255
// characters, VARCHAR(255), no '/' because it is read back through the path, no control
// characters); transaction_type has 1 to 50 characters, no control characters; amount is
// a number, or a numeric string as pydantic accepted, read exactly (see ParseAmount).
func decodeTransaction(r *http.Request) (TransactionRequest, error) {
	body := &capture{ReadCloser: r.Body}
	r.Body = body
	b, err := httpapi.DecodeBody(r)
	if err != nil {
		return TransactionRequest{}, err
	}
	req := TransactionRequest{UserID: b.Key("user_id")}
	var extra []httpapi.FieldError

	before := errCount(b)
	b.Float("amount") // missing, wrong type, not finite: the original's errors
	if errCount(b) == before {
		var fields map[string]json.RawMessage
		_ = json.Unmarshal(body.buf.Bytes(), &fields)
		raw := fields["amount"]
		text := string(raw)
		if raw[0] == '"' {
			_ = json.Unmarshal(raw, &text)
			text = strings.TrimSpace(text)
		}
		amount, err := ParseAmount(text)
		if err != nil {
			extra = append(extra, amountError(err, raw))
		}
		req.Amount = amount
	}

	before = errCount(b)
	req.TransactionType = b.String("transaction_type")
	if errCount(b) == before {
		if fe, bad := checkTransactionType(req.TransactionType); bad {
			extra = append(extra, fe)
		}
	}
	return req, collect(b, extra)
}

func amountError(err error, raw json.RawMessage) httpapi.FieldError {
	loc := []any{"body", "amount"}
	switch {
	case errors.Is(err, ErrAmountPlaces):
		return httpapi.FieldError{Type: "decimal_max_places", Loc: loc, Input: raw,
			Msg: "Decimal input should have no more than 2 decimal places", Ctx: map[string]any{"decimal_places": 2}}
	case errors.Is(err, ErrAmountTooLarge):
		return httpapi.FieldError{Type: "decimal_max_digits", Loc: loc, Input: raw,
			Msg: "Decimal input should have no more than 10 digits in total (at most 99999999.99)", Ctx: map[string]any{"max_digits": 10}}
	default:
		return httpapi.FieldError{Type: "decimal_parsing", Loc: loc, Input: raw, Msg: "Input should be a valid decimal"}
	}
}

func checkTransactionType(s string) (httpapi.FieldError, bool) {
	loc := []any{"body", "transaction_type"}
	n := utf8.RuneCountInString(s)
	switch {
	case n == 0:
		return httpapi.FieldError{Type: "string_too_short", Loc: loc, Msg: "String should have at least 1 character",
			Input: s, Ctx: map[string]any{"min_length": 1}}, true
	case n > MaxTransactionTypeLength:
		return httpapi.FieldError{Type: "string_too_long", Loc: loc, Msg: "String should have at most 50 characters",
			Input: s, Ctx: map[string]any{"max_length": MaxTransactionTypeLength}}, true
	case strings.ContainsFunc(s, unicode.IsControl):
		return httpapi.FieldError{Type: "string_pattern_mismatch", Loc: loc, Msg: "String should not contain control characters", Input: s}, true
	}
	return httpapi.FieldError{}, false
}

// errCount is how many problems b has recorded so far.
func errCount(b *httpapi.Body) int {
	var ve *httpapi.ValidationError
	if errors.As(b.Err(), &ve) {
		return len(ve.Fields)
	}
	return 0
}

// collect is b's problems followed by extra, as one 422, or nil.
func collect(b *httpapi.Body, extra []httpapi.FieldError) error {
	err := b.Err()
	var ve *httpapi.ValidationError
	switch {
	case err != nil && !errors.As(err, &ve):
		return err
	case len(extra) == 0:
		return err
	case ve == nil:
		return &httpapi.ValidationError{Fields: extra}
	}
	return &httpapi.ValidationError{Fields: append(ve.Fields, extra...)}
}

// capture keeps a copy of what is read from a request body, so that a field can be read
// exactly as it was sent (an amount, without going through a float).
type capture struct {
	io.ReadCloser
	buf bytes.Buffer
}

func (c *capture) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.buf.Write(p[:n])
	return n, err
}
