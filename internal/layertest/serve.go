package layertest

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/config"
	"github.com/dblayers/dblayers/internal/service"
)

// Served is a layer's service behind an httptest server.
type Served[S service.Service] struct {
	Service S
	URL     string // the server's base URL
	stop    func()
}

// Stop closes the server, then the service, as a process exit would. The test's cleanup
// calls it too; it acts once.
func (s *Served[S]) Stop() { s.stop() }

// Serve builds a layer the way its binary does — its configuration's defaults (never the
// environment: a developer's CACHE_TTL or WORKER_* must not change a test's result), then
// tune (if not nil) for the test's backends and settings — and serves it on an httptest
// server until the test ends. The service logs nowhere: tests read its answers, not its
// logs.
func Serve[C any, S service.Service](t testing.TB, newService func(context.Context, C, *slog.Logger) (S, error), tune func(*C)) *Served[S] {
	t.Helper()
	var cfg C
	require.NoError(t, config.LoadFrom(&cfg, config.Defaults))
	if tune != nil {
		tune(&cfg)
	}
	svc, err := newService(context.Background(), cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	srv := httptest.NewServer(Validating(t, svc.Handler()))
	s := &Served[S]{Service: svc, URL: srv.URL, stop: sync.OnceFunc(func() { srv.Close(); svc.Close() })}
	t.Cleanup(s.stop)
	return s
}
