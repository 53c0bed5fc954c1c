// Package geo is a multi-region key/value store built by hand, because here the routing
// and the replication are the lesson (layer 9):
//
//   - Region: one region's PostgreSQL and Redis. A local write commits its row and its
//     replication entries (one per other region) in one statement; reads go cache → database.
//   - Clock and Version: a hybrid logical clock per region and the (HLC, region) order that
//     decides which of two writes of a key wins, everywhere the same (last-writer-wins).
//   - shipper: one per ordered pair of regions, delivering the source's entries to the
//     destination with retries and backoff, deleting each entry once applied.
//   - Router: routes requests to a home region, reads with failover to the next healthy
//     region, watches the regions' health, runs the shippers, and simulates the latency of
//     calls between regions.
//
// See layers/l9/README.md for why this converges and what it costs.
package geo

import (
	"errors"
	"fmt"
	"strings"
)

// Default region keys, in the order the original iterates them: a read falls back in this
// order, and lists in responses follow it.
const (
	USEast  = "us-east"
	EUWest  = "eu-west"
	AsiaPac = "asia-pac"
)

// Name is a region's display name in responses: its key in upper case ("US-EAST").
func Name(key string) string { return strings.ToUpper(key) }

// ErrUnknownRegion is a region key that is not configured.
var ErrUnknownRegion = errors.New("unknown region")

// UnknownRegionError names the bad key and the valid ones.
type UnknownRegionError struct {
	Key   string
	Valid []string
}

func (e *UnknownRegionError) Error() string {
	return fmt.Sprintf("invalid region %q: valid regions are %s", e.Key, strings.Join(e.Valid, ", "))
}

func (e *UnknownRegionError) Is(target error) bool { return target == ErrUnknownRegion }
