package replica

import (
	"sync"
	"time"
)

// Tracker remembers, for the keys this process wrote recently, the WAL position a server
// must have replayed before it may answer a read of that key: read-your-writes.
//
// It is bounded in keys and in time. When a key is forgotten (the oldest first, or any
// older than the time-to-live), its position is folded into a floor that every key then
// needs: forgetting makes reads more demanding, never less, so no acknowledged write can be
// hidden by the bound. A floor older than the replicas' lag bound costs nothing, because a
// replica that qualifies has replayed past it anyway.
type Tracker struct {
	maxKeys int
	ttl     time.Duration
	now     func() time.Time

	mu    sync.Mutex
	need  map[string]LSN
	queue []written // in write order; queue[head:] are live
	head  int
	floor LSN
}

type written struct {
	key string
	lsn LSN
	at  time.Time
}

// NewTracker keeps at most maxKeys keys (at least 1), each for at most ttl.
func NewTracker(maxKeys int, ttl time.Duration) *Tracker {
	return &Tracker{maxKeys: max(maxKeys, 1), ttl: ttl, now: time.Now, need: map[string]LSN{}}
}

// Wrote records that a write of key committed at or before lsn was acknowledged.
func (t *Tracker) Wrote(key string, lsn LSN) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if lsn > t.need[key] {
		t.need[key] = lsn
	}
	t.queue = append(t.queue, written{key, lsn, now})
	for len(t.queue)-t.head > t.maxKeys || now.Sub(t.queue[t.head].at) > t.ttl {
		t.forgetOldest()
	}
	if t.head > 1024 && t.head > len(t.queue)/2 {
		t.queue = append(t.queue[:0], t.queue[t.head:]...)
		t.head = 0
	}
}

func (t *Tracker) forgetOldest() {
	w := t.queue[t.head]
	t.queue[t.head] = written{}
	t.head++
	if t.need[w.key] == w.lsn {
		delete(t.need, w.key)
	}
	t.floor = max(t.floor, w.lsn)
}

// Need is the position a server must have replayed to answer a read of key.
func (t *Tracker) Need(key string) LSN {
	t.mu.Lock()
	defer t.mu.Unlock()
	return max(t.floor, t.need[key])
}

// TrackerStats describe what the tracker holds.
type TrackerStats struct {
	Keys  int `json:"tracked_keys"` // keys with their own position
	Floor LSN `json:"floor_lsn"`    // what every other key needs
}

// Stats returns the tracker's size and floor.
func (t *Tracker) Stats() TrackerStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return TrackerStats{Keys: len(t.need), Floor: t.floor}
}
