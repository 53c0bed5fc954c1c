package geo

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// HLC is a hybrid logical clock reading: milliseconds of physical time in the upper 48 bits
// and a logical counter in the lower 16. Readings compare as plain integers, which is what
// makes them cheap to store (one BIGINT) and to compare in SQL.
//
// JSON carries an HLC as a string "<ms>.<logical>", because a JSON number of this size
// (about 2^57) would lose its low bits in any client that reads numbers as doubles.
type HLC int64

const logicalBits = 16

// maxLogical is the largest logical counter; the next tick moves the wall part on by 1 ms.
const maxLogical = 1<<logicalBits - 1

// NewHLC builds a reading from its two parts.
func NewHLC(wallMs int64, logical uint16) HLC { return HLC(wallMs<<logicalBits | int64(logical)) }

// Wall is the physical part, in milliseconds since the Unix epoch.
func (h HLC) Wall() int64 { return int64(h) >> logicalBits }

// Logical is the counter that orders readings within one millisecond.
func (h HLC) Logical() uint16 { return uint16(h & maxLogical) }

// Time is the physical part as a time.
func (h HLC) Time() time.Time { return time.UnixMilli(h.Wall()).UTC() }

// String is "<ms>.<logical>", e.g. "1734567890123.2".
func (h HLC) String() string { return fmt.Sprintf("%d.%d", h.Wall(), h.Logical()) }

// ParseHLC reads the String form.
func ParseHLC(s string) (HLC, error) {
	wall, logical, ok := strings.Cut(s, ".")
	if !ok {
		return 0, fmt.Errorf("hlc %q: want <ms>.<logical>", s)
	}
	w, err := strconv.ParseInt(wall, 10, 64)
	if err != nil || w < 0 || w >= 1<<(63-logicalBits) {
		return 0, fmt.Errorf("hlc %q: bad wall time", s)
	}
	l, err := strconv.ParseUint(logical, 10, logicalBits)
	if err != nil {
		return 0, fmt.Errorf("hlc %q: bad logical counter", s)
	}
	return NewHLC(w, uint16(l)), nil
}

// MarshalText implements encoding.TextMarshaler (JSON strings).
func (h HLC) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *HLC) UnmarshalText(b []byte) error {
	v, err := ParseHLC(string(b))
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// Clock is one region's hybrid logical clock (Kulkarni et al., 2014). Now stamps a local
// write; Observe takes in a reading that arrived from elsewhere (a replicated write, or a
// stored row a local write is about to replace). Every Now is greater than every reading
// Now returned or Observe saw before, and stays close to physical time: it runs ahead of
// the wall clock only by as much as the fastest clock it has heard from.
type Clock struct {
	now  func() time.Time
	mu   sync.Mutex
	last HLC
}

// NewClock returns a clock on the physical time source now (time.Now if nil).
func NewClock(now func() time.Time) *Clock {
	if now == nil {
		now = time.Now
	}
	return &Clock{now: now}
}

// Now returns a new reading, greater than any before.
func (c *Clock) Now() HLC {
	physical := c.now().UnixMilli()
	c.mu.Lock()
	defer c.mu.Unlock()
	wall, logical := c.last.Wall(), int64(c.last.Logical())
	switch {
	case physical > wall:
		wall, logical = physical, 0
	case logical < maxLogical:
		logical++
	default: // 65,536 readings in one millisecond: borrow the next millisecond
		wall, logical = wall+1, 0
	}
	c.last = NewHLC(wall, uint16(logical))
	return c.last
}

// Observe makes every later Now greater than remote.
func (c *Clock) Observe(remote HLC) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last = max(c.last, remote)
}

// Last is the greatest reading issued or observed so far.
func (c *Clock) Last() HLC {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// Version orders the writes of one key across all regions: the later HLC wins, and of two
// equal HLCs (two regions stamped the same instant) the greater region key wins. Every
// region applies a write only if its Version is newer than the stored one, so all regions
// keep the same winner whatever order the writes arrive in.
type Version struct {
	HLC    HLC    `json:"hlc"`
	Origin string `json:"origin"` // key of the region where the write was made
}

// Newer reports whether v wins over o.
func (v Version) Newer(o Version) bool {
	if v.HLC != o.HLC {
		return v.HLC > o.HLC
	}
	return v.Origin > o.Origin
}
