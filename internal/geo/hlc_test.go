package geo

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeTime is a physical clock the test moves by hand.
type fakeTime struct{ ms int64 }

func (f *fakeTime) now() time.Time { return time.UnixMilli(f.ms) }

func TestClockNowIsStrictlyIncreasing(t *testing.T) {
	pt := &fakeTime{ms: 1_000}
	c := NewClock(pt.now)

	a, b := c.Now(), c.Now()
	assert.Equal(t, NewHLC(1_000, 0), a, "first reading: physical time, counter 0")
	assert.Equal(t, NewHLC(1_000, 1), b, "same millisecond: the counter orders readings")

	pt.ms = 999 // the wall clock steps back (NTP): readings still increase
	assert.Equal(t, NewHLC(1_000, 2), c.Now())

	pt.ms = 1_005
	assert.Equal(t, NewHLC(1_005, 0), c.Now(), "physical time moved on: counter back to 0")
}

func TestClockObserveRemoteAhead(t *testing.T) {
	pt := &fakeTime{ms: 1_000}
	c := NewClock(pt.now)
	remote := NewHLC(5_000, 7) // a region whose clock is 4 s ahead
	c.Observe(remote)
	got := c.Now()
	assert.Greater(t, got, remote, "a local write after a received one is newer")
	assert.Equal(t, NewHLC(5_000, 8), got)

	c.Observe(NewHLC(10, 0)) // an old reading changes nothing
	assert.Equal(t, NewHLC(5_000, 9), c.Now())

	pt.ms = 6_000 // physical time passes the remote's: back to following the wall clock
	assert.Equal(t, NewHLC(6_000, 0), c.Now())
	assert.Equal(t, NewHLC(6_000, 0), c.Last())
}

func TestClockCounterOverflowBorrowsAMillisecond(t *testing.T) {
	pt := &fakeTime{ms: 1_000}
	c := NewClock(pt.now)
	c.Observe(NewHLC(1_000, maxLogical))
	assert.Equal(t, NewHLC(1_001, 0), c.Now())
	assert.Equal(t, NewHLC(1_001, 1), c.Now())
}

func TestHLCTextForm(t *testing.T) {
	h := NewHLC(1_734_567_890_123, 42)
	assert.Equal(t, int64(1_734_567_890_123), h.Wall())
	assert.Equal(t, uint16(42), h.Logical())
	assert.Equal(t, "1734567890123.42", h.String())
	back, err := ParseHLC(h.String())
	require.NoError(t, err)
	assert.Equal(t, h, back)

	data, err := json.Marshal(map[string]HLC{"hlc": h})
	require.NoError(t, err)
	assert.JSONEq(t, `{"hlc":"1734567890123.42"}`, string(data), "a string: doubles cannot hold 57 bits")
	var decoded struct{ HLC HLC }
	require.NoError(t, json.Unmarshal([]byte(`{"HLC":"1734567890123.42"}`), &decoded))
	assert.Equal(t, h, decoded.HLC)

	for _, bad := range []string{"", "12", "a.1", "1.b", "1.65536", "-1.0"} {
		_, err := ParseHLC(bad)
		assert.Error(t, err, bad)
	}
}

func TestVersionOrder(t *testing.T) {
	early, late := NewHLC(1_000, 0), NewHLC(1_000, 1)
	assert.True(t, Version{late, USEast}.Newer(Version{early, USEast}), "the later clock reading wins")
	assert.True(t, Version{late, AsiaPac}.Newer(Version{early, USEast}), "whatever the regions")
	assert.True(t, Version{early, USEast}.Newer(Version{early, EUWest}), "equal readings: the greater region key wins")
	assert.True(t, Version{early, EUWest}.Newer(Version{early, AsiaPac}))
	assert.False(t, Version{early, EUWest}.Newer(Version{early, EUWest}), "a version is not newer than itself")
}
