package l7

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/dblayers/dblayers/internal/cqrs"
	"github.com/dblayers/dblayers/internal/pgstore"
)

// ProjectorConfig is the projector process's environment.
type ProjectorConfig struct {
	Databases
	Projector cqrs.Config
	// StallAfter: -healthcheck fails when no projector has shown itself alive for this long.
	StallAfter time.Duration `env:"PROJECTOR_STALL_AFTER" default:"30s"`
	LogLevel   string        `env:"LOG_LEVEL" default:"info"` // debug, info, warn or error
	// RebuildStepTimeout bounds each step of -rebuild (a batch's replay, the merge, the
	// commit): a database that hangs fails the rebuild within it, rolled back.
	RebuildStepTimeout time.Duration `env:"PROJECTOR_REBUILD_STEP_TIMEOUT" default:"5m"`
}

// RunProjector opens both databases and projects events until ctx ends. Any number of
// projector processes may run: they never apply one event twice.
func RunProjector(ctx context.Context, cfg ProjectorConfig, logger *slog.Logger) error {
	write, read, err := openDatabases(ctx, cfg.Databases)
	if err != nil {
		return err
	}
	defer write.Close()
	defer read.Close()
	return cqrs.NewProjector(cqrs.NewOutbox(write), read, cfg.Projector, logger).Run(ctx)
}

// rebuildBatch is how many events a rebuild reads from the outbox at a time.
const rebuildBatch = 1000

// Rebuild recomputes the read model from the write database's outbox and makes it the read
// model (see cqrs.Rebuild). Running projectors pause meanwhile and carry on afterwards.
func Rebuild(ctx context.Context, cfg ProjectorConfig, logger *slog.Logger) (cqrs.RebuildResult, error) {
	write, read, err := openDatabases(ctx, cfg.Databases)
	if err != nil {
		return cqrs.RebuildResult{}, err
	}
	defer write.Close()
	defer read.Close()
	return cqrs.Rebuild(ctx, cqrs.NewOutbox(write), read, rebuildBatch, cfg.RebuildStepTimeout, logger)
}

// CheckProjector is the projector container's health check: it fails unless some
// projector recorded a heartbeat in the read database within StallAfter. It opens one
// connection and creates nothing.
func CheckProjector(ctx context.Context, cfg ProjectorConfig) error {
	direct, err := pgstore.NewDirect(cfg.ReadDBURL, pgstore.DirectConfig{Timeouts: cfg.Pool.Timeouts, MaxOpen: 1})
	if err != nil {
		return err
	}
	state, err := cqrs.NewReadModel(direct).State(ctx)
	if err != nil {
		return err
	}
	switch {
	case state.SinceHeartbeat == nil:
		return fmt.Errorf("no projector has run yet")
	case *state.SinceHeartbeat > cfg.StallAfter:
		return fmt.Errorf("no projector seen for %s (limit %s)", state.SinceHeartbeat.Round(time.Millisecond), cfg.StallAfter)
	}
	return nil
}
