// Package architecture holds no code: its tests keep the import graph's floors and the
// table of which internal packages each layer uses (LAYERS.md) current.
//
//   - a layer (layers/lN) never imports another layer;
//   - an internal package never imports a layer;
//   - a layer's binaries (cmd/lN, cmd/lN-*) only wire: they import their own layer, the
//     start-up parts (internal/service, internal/config) and packages their layer imports
//     itself (for the types of its API), nothing else of the module;
//   - the tools (cmd/loadgen, cmd/loadreport, cmd/drill) import no layer.
//
// After adding or removing an internal package from a layer, regenerate the table:
//
//	go test ./internal/architecture -run TestLayersTable -update
package architecture
