// Package logthrottle keeps a repeated log line from flooding the log: during an outage,
// every request (or every dial of a connection pool) would otherwise log the same failure.
package logthrottle

import (
	"sync/atomic"
	"time"
)

// Every lets one line through per Interval and counts the ones it held back. It is safe for
// concurrent use.
type Every struct {
	Interval time.Duration

	last atomic.Int64 // unix nanoseconds of the last line let through; 0 before the first
	held atomic.Int64
}

// Allow reports whether a line may be logged now and, if so, how many were held back since
// the last one.
func (e *Every) Allow() (ok bool, held int64) {
	now := time.Now().UnixNano()
	last := e.last.Load()
	if last != 0 && now-last < int64(e.Interval) || !e.last.CompareAndSwap(last, now) {
		e.held.Add(1)
		return false, 0
	}
	return true, e.held.Swap(0)
}
