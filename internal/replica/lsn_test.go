package replica

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLSN(t *testing.T) {
	for _, tc := range []struct {
		text string
		lsn  LSN
	}{
		{"0/0", 0},
		{"0/1", 1},
		{"16/B374D848", 0x16_B374D848},
		{"FFFFFFFF/FFFFFFFF", ^LSN(0)},
	} {
		got, err := ParseLSN(tc.text)
		require.NoError(t, err, tc.text)
		assert.Equal(t, tc.lsn, got, tc.text)
		assert.Equal(t, tc.text, got.String())
	}
	a, _ := ParseLSN("0/FFFFFFFF")
	b, _ := ParseLSN("1/0")
	assert.Less(t, a, b, "the high word orders first")
	for _, bad := range []string{"", "12", "x/1", "1/x", "100000000/0", "-1/0"} {
		_, err := ParseLSN(bad)
		assert.Error(t, err, bad)
	}
	text, err := LSN(0x1_00000010).MarshalText()
	require.NoError(t, err)
	assert.Equal(t, "1/10", string(text))
}
