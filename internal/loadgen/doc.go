// Package loadgen is a small HTTP load generator for targets on this machine: it sends
// templated requests (a distinct key per write, uniform reads over a key space, weighted
// mixes of specs) from a fixed number of workers, optionally at a fixed total rate, and
// measures latency percentiles in fixed memory. It refuses any target that is not loopback.
// cmd/loadgen is its command line; CeilingHandler is the trivial handler whose throughput
// bounds what any layer can reach with the same HTTP stack.
package loadgen
