package l8_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/layers/l8"
)

func TestParseAmount(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // String(), or "" when err is expected
		err  error
	}{
		{"123.45", "123.45", nil},
		{"0.1", "0.10", nil},
		{"-0.5", "-0.50", nil},
		{"+7", "7.00", nil},
		{"1.", "1.00", nil},
		{".05", "0.05", nil},
		{"1e2", "100.00", nil},
		{"1E-2", "0.01", nil},
		{"12345e-4", "", l8.ErrAmountPlaces},
		{"100.000", "100.00", nil},
		{"0.010", "0.01", nil},
		{"0e999999", "0.00", nil},
		{"-0", "0.00", nil},
		{"007.5", "7.50", nil},
		{"99999999.99", "99999999.99", nil},
		{"-99999999.99", "-99999999.99", nil},
		{"9999999999e-2", "99999999.99", nil},
		{"1.005", "", l8.ErrAmountPlaces},
		{"0.001", "", l8.ErrAmountPlaces},
		{"1e-3", "", l8.ErrAmountPlaces},
		{"1e-999999999999", "", l8.ErrAmountPlaces},
		{"100000000", "", l8.ErrAmountTooLarge},
		{"99999999.995", "", l8.ErrAmountPlaces},
		{"1e8", "", l8.ErrAmountTooLarge},
		{"1e999999999999", "", l8.ErrAmountTooLarge},
		{"", "", l8.ErrAmountSyntax},
		{".", "", l8.ErrAmountSyntax},
		{"-", "", l8.ErrAmountSyntax},
		{"1e", "", l8.ErrAmountSyntax},
		{"0x10", "", l8.ErrAmountSyntax},
		{"1_000", "", l8.ErrAmountSyntax},
		{"NaN", "", l8.ErrAmountSyntax},
		{"1/3", "", l8.ErrAmountSyntax},
		{" 1", "", l8.ErrAmountSyntax},
	} {
		a, err := l8.ParseAmount(tc.in)
		if tc.want == "" {
			assert.ErrorIs(t, err, tc.err, tc.in)
			continue
		}
		if tc.err != nil {
			assert.ErrorIs(t, err, tc.err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, a.String(), tc.in)
	}
}

func TestAmountJSON(t *testing.T) {
	var v struct{ A l8.Amount }
	require.NoError(t, json.Unmarshal([]byte(`{"A":100.00}`), &v))
	assert.Equal(t, l8.Amount(10000), v.A)
	out, err := json.Marshal(v)
	require.NoError(t, err)
	assert.Equal(t, `{"A":100.00}`, string(out))
	assert.Error(t, json.Unmarshal([]byte(`{"A":1.001}`), &v))
}
