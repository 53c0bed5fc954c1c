package l8

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Amount is a sum of money in cents, exact: the transactions.amount column is
// DECIMAL(10,2), so an amount has at most two decimals and at most ten digits.
type Amount int64

// MaxAmount is the largest amount DECIMAL(10,2) holds: 99999999.99.
const MaxAmount Amount = 99_999_999_99

// Errors of ParseAmount.
var (
	ErrAmountSyntax   = errors.New("not a decimal number")
	ErrAmountPlaces   = errors.New("more than 2 decimal places")
	ErrAmountTooLarge = errors.New("beyond DECIMAL(10,2)")
)

// decimalRE is a decimal number: JSON's number syntax, plus what Python's float() also
// reads from a string (a leading '+', "1." and ".5").
var decimalRE = regexp.MustCompile(`^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$`)

// ParseAmount reads a decimal number exactly (never through a float): "123.45", "1e2",
// "-0.5", "100.000". It refuses more than two significant decimal places rather than
// round a sum of money, and anything beyond ±MaxAmount.
func ParseAmount(text string) (Amount, error) {
	m := decimalRE.FindStringSubmatch(text)
	if m == nil || m[2]+m[3] == "" {
		return 0, ErrAmountSyntax
	}
	sign, digits, exp := m[1], m[2]+m[3], 0
	if m[4] != "" {
		e, err := strconv.Atoi(m[4])
		if err != nil || e > 1000 || e < -1000 {
			e = 1001 // absurd exponents: too large, or too many places unless the digits are all 0
			if strings.HasPrefix(m[4], "-") {
				e = -1001
			}
		}
		exp = e
	}
	digits = strings.TrimLeft(digits, "0")
	if digits == "" {
		return 0, nil
	}
	// value = digits × 10^shift cents
	shift := exp - len(m[3]) + 2
	if shift < 0 {
		drop := -shift
		if drop >= len(digits) || strings.Trim(digits[len(digits)-drop:], "0") != "" {
			return 0, ErrAmountPlaces
		}
		digits, shift = digits[:len(digits)-drop], 0
	}
	if len(digits)+shift > 10 {
		return 0, ErrAmountTooLarge
	}
	cents, err := strconv.ParseInt(digits+strings.Repeat("0", shift), 10, 64)
	if err != nil || Amount(cents) > MaxAmount {
		return 0, ErrAmountTooLarge
	}
	if sign == "-" {
		cents = -cents
	}
	return Amount(cents), nil
}

// String is the amount with exactly two decimals, as PostgreSQL prints DECIMAL(10,2):
// "123.45", "-0.50", "100.00".
func (a Amount) String() string {
	sign, c := "", int64(a)
	if c < 0 {
		sign, c = "-", -c
	}
	return fmt.Sprintf("%s%d.%02d", sign, c/100, c%100)
}

// MarshalJSON writes the amount as a JSON number with its two decimals (123.45, 100.00):
// exact in the text, and a number, as the original's clients expect.
func (a Amount) MarshalJSON() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalJSON reads what MarshalJSON wrote.
func (a *Amount) UnmarshalJSON(data []byte) error {
	v, err := ParseAmount(string(data))
	if err != nil {
		return fmt.Errorf("amount %s: %w", data, err)
	}
	*a = v
	return nil
}
