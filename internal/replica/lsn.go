package replica

import (
	"fmt"
	"strconv"
	"strings"
)

// LSN is a PostgreSQL write-ahead-log position (pg_lsn): a byte offset into the WAL, written
// "X/Y" (high and low 32 bits in hexadecimal). Positions only grow on a server's timeline,
// so "has this replica replayed the commit of my write?" is replayed >= commit.
type LSN uint64

// ParseLSN reads the text form of a pg_lsn, e.g. "16/B374D848".
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("lsn %q: no '/'", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("lsn %q: %w", s, err)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("lsn %q: %w", s, err)
	}
	return LSN(h<<32 | l), nil
}

func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint64(l)>>32, uint64(l)&0xFFFFFFFF) }

// MarshalText writes the pg_lsn form, so JSON shows positions as PostgreSQL does.
func (l LSN) MarshalText() ([]byte, error) { return []byte(l.String()), nil }
