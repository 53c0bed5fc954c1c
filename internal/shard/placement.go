// Package shard spreads records over several stores: a Placement says which of N shards
// owns a key (three strategies: the original's MD5 modulo N, a consistent-hash ring with
// virtual nodes, and jump consistent hash), a Router is a record.Store that sends each Get
// and Put to the owner's store, and a Mover moves the rows whose owner changes when shards
// are added, while the service keeps serving (see Router.Resharding and Mover).
package shard

import (
	"crypto/md5"
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
)

// Strategy names, as configured (SHARD_STRATEGY).
const (
	// Modulo is the original's placement: the key's MD5 digest, read as an unsigned
	// big-endian 128-bit integer, modulo N. Adding a shard moves about N/(N+1) of the keys.
	Modulo = "modulo"
	// Ring is consistent hashing: every shard owns RingVirtualNodes points on a 64-bit ring
	// and a key belongs to the first point at or after its hash. Adding a shard moves about
	// 1/(N+1) of the keys, all of them to the new shard.
	Ring = "ring"
	// Jump is Lamping and Veach's jump consistent hash ("A Fast, Minimal Memory, Consistent
	// Hash Algorithm", 2014): no table at all, and adding a shard moves exactly the keys the
	// new shard should own, about 1/(N+1) of them.
	Jump = "jump"
)

// Strategies lists the strategy names, the default first.
func Strategies() []string { return []string{Modulo, Ring, Jump} }

// RingVirtualNodes is how many points each shard owns on the Ring. More points balance
// better and cost memory and a longer binary search; 256 keeps every shard within about 8%
// of its share at 3 and at 10 shards (TestBalanceAndMovement, docs/l4-resharding.md). It is
// part of the placement: changing it moves keys like a reshard does.
const RingVirtualNodes = 256

// Placement maps keys to shards 0..Shards()-1. It is deterministic and safe for
// concurrent use.
type Placement interface {
	Owner(key string) int
	Shards() int
	Strategy() string
}

// NewPlacement returns the placement of the named strategy over n shards.
func NewPlacement(strategy string, n int) (Placement, error) {
	if n < 1 {
		return nil, fmt.Errorf("shard: %d shards: need at least 1", n)
	}
	switch strategy {
	case Modulo:
		return modulo{n: uint64(n)}, nil
	case Ring:
		return newRing(n), nil
	case Jump:
		return jump{n: n}, nil
	}
	return nil, fmt.Errorf("shard: unknown strategy %q (use one of %v)", strategy, Strategies())
}

// digest is the key's MD5 digest as two big-endian 64-bit halves.
func digest(key string) (hi, lo uint64) {
	d := md5.Sum([]byte(key))
	return binary.BigEndian.Uint64(d[:8]), binary.BigEndian.Uint64(d[8:])
}

// hash64 is the first half of the key's MD5 digest: the ring and jump hash.
func hash64(key string) uint64 {
	hi, _ := digest(key)
	return hi
}

type modulo struct{ n uint64 }

func (m modulo) Owner(key string) int {
	hi, lo := digest(key)
	// (hi·2⁶⁴ + lo) mod n, as Python's int(md5(key).hexdigest(), 16) % n.
	return int(bits.Rem64(hi, lo, m.n))
}
func (m modulo) Shards() int      { return int(m.n) }
func (m modulo) Strategy() string { return Modulo }

type ring struct {
	n      int
	points []uint64 // sorted
	owners []int    // owners[i] owns points[i]
}

func newRing(n int) *ring {
	type point struct {
		at    uint64
		owner int
	}
	all := make([]point, 0, n*RingVirtualNodes)
	for s := range n {
		for v := range RingVirtualNodes {
			// A point depends only on its shard and number, so the ring of N+1 shards is
			// the ring of N plus the new shard's points: keys move only to the new shard.
			all = append(all, point{hash64("shard-" + strconv.Itoa(s) + "-vnode-" + strconv.Itoa(v)), s})
		}
	}
	slices.SortFunc(all, func(a, b point) int {
		if a.at != b.at {
			return compare(a.at, b.at)
		}
		return a.owner - b.owner // a collision (improbable) resolves the same way every time
	})
	r := &ring{n: n, points: make([]uint64, len(all)), owners: make([]int, len(all))}
	for i, p := range all {
		r.points[i], r.owners[i] = p.at, p.owner
	}
	return r
}

func compare(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (r *ring) Owner(key string) int {
	h := hash64(key)
	i, _ := slices.BinarySearch(r.points, h)
	if i == len(r.points) {
		i = 0 // past the last point: wrap around to the first
	}
	return r.owners[i]
}
func (r *ring) Shards() int      { return r.n }
func (r *ring) Strategy() string { return Ring }

type jump struct{ n int }

func (j jump) Owner(key string) int {
	k := hash64(key)
	b, next := int64(-1), int64(0)
	for next < int64(j.n) {
		b = next
		k = k*2862933555777941757 + 1
		next = int64(float64(b+1) * (float64(int64(1)<<31) / float64((k>>33)+1)))
	}
	return int(b)
}
func (j jump) Shards() int      { return j.n }
func (j jump) Strategy() string { return Jump }
