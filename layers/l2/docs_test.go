package l2_test

import (
	"flag"
	"os"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/layertest"
	"github.com/dblayers/dblayers/internal/testenv"
)

var screenshot = flag.String("docs-screenshot", "", "write a PNG of /docs to this file (e.g. ../../docs/l2-docs.png)")

// A real browser opens /docs, sees the operations, and runs "Try it out" for a write and a
// read of it: Swagger UI, its embedded assets and the document work together, offline.
func TestDocsInBrowser(t *testing.T) {
	ctx := layertest.Browser(t)
	tg := start(t, testenv.PostgresURL(t), testenv.RedisURL(t))

	ops := layertest.OpenDocs(t, ctx, tg.URL)
	assert.Equal(t, []string{"/write", "/read/{key}", "/health", "/cache-stats"}, ops, "the operations listed")
	if *screenshot != "" {
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(*screenshot, png, 0o644))
	}

	// The write, with the example body Swagger UI fills in: {"key": "user:1", "value": "Alice"}.
	status, body := layertest.TryItOut(t, ctx, layertest.DocsWriteOp)
	assert.Equal(t, "200", status)
	assert.JSONEq(t, `{"success": true, "key": "user:1", "message": "Data written successfully"}`, body)

	status, body = layertest.TryItOut(t, ctx, layertest.DocsReadOp, layertest.FillReadKey("user:1"))
	assert.Equal(t, "200", status)
	assert.Contains(t, body, `"value": "Alice"`)
	assert.Contains(t, body, `"success": true`)
}
