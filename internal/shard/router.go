package shard

import (
	"context"
	"errors"
	"fmt"

	"github.com/dblayers/dblayers/internal/record"
)

// Router is a record.Store over several stores, one per shard: each key's Get and Put go
// to the store of the shard that owns it. Nothing is ever read from or written to two
// shards at once, so a shard that is down costs exactly the keys it owns.
//
// While a reshard is in progress (see Resharding) a Router writes to a key's new owner and
// reads the new owner first, then the old one.
type Router struct {
	placement Placement
	previous  Placement // the placement being left while resharding; nil otherwise
	stores    []record.Store
	names     []string // of the shards, in errors; nil: "Shard N"
}

var _ record.Store = (*Router)(nil)

// NewRouter returns a Router that places keys over stores with the named strategy
// (Modulo, Ring or Jump): store i serves shard i. names, if given (one per store), name the
// shards in errors; the default is "Shard N".
func NewRouter(strategy string, stores []record.Store, names ...string) (*Router, error) {
	p, err := NewPlacement(strategy, len(stores))
	if err != nil {
		return nil, err
	}
	if names != nil && len(names) != len(stores) {
		return nil, fmt.Errorf("%d shard names for %d shards", len(names), len(stores))
	}
	return &Router{placement: p, stores: stores, names: names}, nil
}

// Resharding returns a Router for the time the keys of the first from shards are being
// moved to their owners among all of r's shards (the shards after the first from are the
// ones being added). It answers for the whole move, while a Mover runs:
//
//   - Put writes to the key's new owner only;
//   - Get reads the new owner; if the key is not there and its owner changes, the old
//     owner; if not there either, the new owner once more. The Mover copies a row to its
//     new owner before it deletes it from the old one, so a row that was on neither shard
//     when we looked has been copied by the time we look the second time.
//
// Every process that writes must use the resharding Router before the Mover starts and
// may go back to a plain Router once it has finished.
func (r *Router) Resharding(from int) (*Router, error) {
	if from < 1 || from >= len(r.stores) {
		return nil, fmt.Errorf("shard: resharding from %d to %d shards: need 1 ≤ from < %d", from, len(r.stores), len(r.stores))
	}
	prev, err := NewPlacement(r.placement.Strategy(), from)
	if err != nil {
		return nil, err
	}
	return &Router{placement: r.placement, previous: prev, stores: r.stores, names: r.names}, nil
}

// Owner is the shard that owns key (its new owner while resharding).
func (r *Router) Owner(key string) int { return r.placement.Owner(key) }

// Placement is how keys are placed now.
func (r *Router) Placement() Placement { return r.placement }

// Previous is the placement being left while resharding, or nil.
func (r *Router) Previous() Placement { return r.previous }

// Shards is the number of shards.
func (r *Router) Shards() int { return len(r.stores) }

// Store is shard i's store.
func (r *Router) Store(i int) record.Store { return r.stores[i] }

// Get reads key from its owner.
func (r *Router) Get(ctx context.Context, key string) (record.Record, error) {
	owner := r.placement.Owner(key)
	rec, err := r.get(ctx, owner, key)
	if r.previous == nil || !errors.Is(err, record.ErrNotFound) {
		return rec, err
	}
	old := r.previous.Owner(key)
	if old == owner {
		return rec, err
	}
	if rec, err = r.get(ctx, old, key); !errors.Is(err, record.ErrNotFound) {
		return rec, err
	}
	return r.get(ctx, owner, key)
}

// Put writes key to its owner.
func (r *Router) Put(ctx context.Context, key, value string) error {
	owner := r.placement.Owner(key)
	return r.shardError(owner, r.stores[owner].Put(ctx, key, value))
}

func (r *Router) get(ctx context.Context, shard int, key string) (record.Record, error) {
	rec, err := r.stores[shard].Get(ctx, key)
	if err != nil && !errors.Is(err, record.ErrNotFound) {
		return rec, r.shardError(shard, err)
	}
	return rec, err
}

// shardError names the shard in err. An unavailable shard is reported to clients as
// "Shard N unavailable" (HTTP 503; or the shard's name), which tells them which part of the
// key space is down and nothing about hosts or drivers.
func (r *Router) shardError(shard int, err error) error {
	if err == nil {
		return nil
	}
	unavailable := record.IsUnavailable(err)
	var name string
	switch {
	case r.names != nil:
		name = r.names[shard]
	case unavailable:
		name = fmt.Sprintf("Shard %d", shard) // as the original named it to clients
	default:
		name = fmt.Sprintf("shard %d", shard)
	}
	if unavailable {
		return record.Unavailable(name, err)
	}
	return fmt.Errorf("%s: %w", name, err)
}
