package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Bus carries in-process cache invalidations between the processes that share one Redis:
// a write through one process tells every other to drop its L1 copy of the key. It is
// Redis pub/sub on one channel, which must be the same for the processes that share data
// and different from any other use of the server (channels are server-wide, not per
// database: see DefaultChannel).
//
// Pub/sub delivers at most once: a message published while a subscriber is disconnected
// is lost. The Bus therefore reports every change of its subscription to its owner, who
// clears its whole L1 when the subscription is lost and again when it is re-established,
// and keeps entries filled meanwhile only briefly (Tiered's DisconnectedTTL). A publish
// that fails is replaced by a "clear everything" broadcast, sent as soon as Redis answers.
type Bus struct {
	rdb     redis.UniversalClient
	channel string
	origin  string // this process's id: its own messages are not applied twice
	logger  *slog.Logger

	subscribed  atomic.Bool
	resendAll   atomic.Bool  // a publish failed: broadcast "clear all" when Redis answers
	subscribes  atomic.Int64 // times the subscription was (re)established
	received    atomic.Int64 // invalidations received from other processes
	startOnce   sync.Once
	closeOnce   sync.Once
	cancel      context.CancelFunc
	done        chan struct{}
	idleTimeout time.Duration
}

// Bus message ops: one key, or everything.
const (
	opKey = "k"
	opAll = "*"
)

// busIdleTimeout is how long the subscriber waits for a message before it pings the
// server; a second silent interval after the ping means the connection is dead, so a
// connection that dies without being closed is noticed within two intervals.
const busIdleTimeout = time.Second

// DefaultChannel is the invalidation channel for the processes that use Redis database db:
// processes on the same database share it, processes on other databases of the same
// server do not hear it.
func DefaultChannel(db int) string { return fmt.Sprintf("dblayers:l1-invalidate:db%d", db) }

// NewBus returns a bus on channel. It starts listening when a Tiered cache is built on it.
func NewBus(rdb redis.UniversalClient, channel string, logger *slog.Logger) *Bus {
	var id [8]byte
	_, _ = rand.Read(id[:])
	return &Bus{
		rdb: rdb, channel: channel, origin: hex.EncodeToString(id[:]), logger: logger,
		done: make(chan struct{}), idleTimeout: busIdleTimeout,
	}
}

// Channel is the pub/sub channel the bus uses.
func (b *Bus) Channel() string { return b.channel }

// Subscribed reports whether the subscription is established now, i.e. whether
// invalidations published by other processes reach this one.
func (b *Bus) Subscribed() bool { return b.subscribed.Load() }

// Received is the number of invalidations received from other processes.
func (b *Bus) Received() int64 { return b.received.Load() }

// Publish tells the other processes to drop key from their L1. If Redis cannot be
// reached, a "clear all" broadcast is sent later instead.
func (b *Bus) Publish(ctx context.Context, key string) { b.publish(ctx, opKey, key) }

// PublishAll tells the other processes to clear their whole L1.
func (b *Bus) PublishAll(ctx context.Context) { b.publish(ctx, opAll, "") }

func (b *Bus) publish(ctx context.Context, op, key string) {
	ctx = context.WithoutCancel(ctx) // a client that went away must not cancel the broadcast
	if err := b.rdb.Publish(ctx, b.channel, b.origin+" "+op+" "+key).Err(); err != nil {
		b.resendAll.Store(true)
		b.logger.Warn("L1 invalidation broadcast deferred", "key", key, "error", err)
	}
}

// start runs the subscriber until Close. onKey drops one key, onAll clears everything.
func (b *Bus) start(onKey func(key string), onAll func()) {
	b.startOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		b.cancel = cancel
		go b.listen(ctx, onKey, onAll)
	})
}

// Close stops the subscriber and waits for it.
func (b *Bus) Close() {
	b.closeOnce.Do(func() {
		if b.cancel == nil {
			close(b.done)
			return
		}
		b.cancel()
		<-b.done
	})
}

// listen receives messages until ctx ends. It is the only goroutine that changes the
// subscription state, and it calls onAll when the subscription is lost and whenever it is
// (re)established, so that nothing filled while a message could have been missed survives.
func (b *Bus) listen(ctx context.Context, onKey func(string), onAll func()) {
	defer close(b.done)
	ps := b.rdb.Subscribe(ctx, b.channel)
	defer func() { _ = ps.Close() }()

	lost := func() {
		if b.subscribed.Swap(false) {
			onAll()
			b.logger.Warn("L1 invalidation subscription lost: L1 cleared, entries kept briefly until it is back", "channel", b.channel)
		}
	}
	// Every confirmation clears L1, not only the first after a loss this loop saw: go-redis
	// also reconnects inside other calls (a failed ping), and messages may have been lost
	// then too.
	subscribed := func() {
		b.subscribed.Store(true)
		onAll()
		if b.subscribes.Add(1) == 1 {
			b.logger.Info("L1 invalidation subscribed", "channel", b.channel)
		} else {
			b.logger.Warn("L1 invalidation subscribed again: L1 cleared", "channel", b.channel)
		}
	}
	failures, silent := 0, 0
	for ctx.Err() == nil {
		if b.resendAll.Load() {
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			if b.rdb.Publish(pctx, b.channel, b.origin+" "+opAll+" ").Err() == nil {
				b.resendAll.Store(false)
			}
			cancel()
		}
		msg, err := ps.ReceiveTimeout(ctx, b.idleTimeout)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if isTimeout(err) {
				silent++
				if silent == 1 {
					pctx, cancel := context.WithTimeout(ctx, b.idleTimeout)
					_ = ps.Ping(pctx)
					cancel()
					continue
				}
				// The server answered neither messages nor pings: the connection is dead
				// without having been closed. Start over on a new one.
				_ = ps.Close()
				ps = b.rdb.Subscribe(ctx, b.channel)
			}
			lost()
			silent = 0
			failures++
			sleep(ctx, min(time.Duration(failures)*100*time.Millisecond, time.Second))
			continue
		}
		failures, silent = 0, 0
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == b.channel {
				subscribed()
			}
		case *redis.Message:
			b.apply(m.Payload, onKey, onAll)
		}
	}
}

// apply handles one message: "<origin> k <key>" or "<origin> * ".
func (b *Bus) apply(payload string, onKey func(string), onAll func()) {
	origin, rest, ok1 := strings.Cut(payload, " ")
	op, key, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 {
		b.logger.Warn("ignoring malformed L1 invalidation", "channel", b.channel)
		return
	}
	if origin == b.origin {
		return
	}
	b.received.Add(1)
	switch op {
	case opKey:
		onKey(key)
	case opAll:
		onAll()
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
