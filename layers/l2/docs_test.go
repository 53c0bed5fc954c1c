package l2_test

import (
	"context"
	"flag"
	"os"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/testenv"
)

var screenshot = flag.String("docs-screenshot", "", "write a PNG of /docs to this file (e.g. ../../docs/l2-docs.png)")

// A real browser opens /docs, sees the operations, and runs "Try it out" for a write and a
// read of it: Swagger UI, its embedded assets and the document work together, offline.
func TestDocsInBrowser(t *testing.T) {
	browser := testenv.Chromium(t)
	tg := start(t, testenv.PostgresURL(t), testenv.RedisURL(t))

	alloc, cancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(browser), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 1000))
	defer cancel()
	browserCtx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	require.NoError(t, chromedp.Do(browserCtx), "start the browser") // its context must carry no deadline
	ctx, cancel := context.WithTimeout(browserCtx, 2*time.Minute)    // a bound for a hung page, not a speed bound
	defer cancel()

	const write, read = "#operations-records-post_write", "#operations-records-get_read_key"
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(tg.URL+"/docs"),
		chromedp.WaitVisible(chromedp.CSS(write+" .opblock-summary")),
	))
	ops, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`[...document.querySelectorAll(".opblock-summary-path")].map(e => e.textContent.replace(/\u200b/g, ""))`))
	require.NoError(t, err)
	assert.Equal(t, []string{"/write", "/read/{key}", "/health", "/cache-stats"}, ops, "the operations listed")
	if *screenshot != "" {
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(*screenshot, png, 0o644))
	}

	// The write, with the example body Swagger UI fills in: {"key": "user:1", "value": "Alice"}.
	status, body := tryItOut(t, ctx, write)
	assert.Equal(t, "200", status)
	assert.JSONEq(t, `{"success": true, "key": "user:1", "message": "Data written successfully"}`, body)

	status, body = tryItOut(t, ctx, read, chromedp.SendKeys(chromedp.CSS(read+` input[placeholder="key"]`), "user:1"))
	assert.Equal(t, "200", status)
	assert.Contains(t, body, `"value": "Alice"`)
	assert.Contains(t, body, `"success": true`)
}

// tryItOut opens the operation, presses "Try it out", runs fill, presses "Execute" and
// returns the status and body Swagger UI shows.
func tryItOut(t *testing.T, ctx context.Context, op string, fill ...chromedp.Action[chromedp.Void]) (status, body string) {
	t.Helper()
	steps := append([]chromedp.Action[chromedp.Void]{
		chromedp.Click(chromedp.CSS(op + " .opblock-summary-control")),
		chromedp.Click(chromedp.CSS(op + " .try-out__btn")),
	}, fill...)
	steps = append(steps, chromedp.Click(chromedp.CSS(op+" .execute")),
		chromedp.WaitVisible(chromedp.CSS(op+" .live-responses-table tbody .response-col_status")))
	require.NoError(t, chromedp.Do(ctx, steps...), op)
	status, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(op+" .live-responses-table tbody .response-col_status")))
	require.NoError(t, err)
	body, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(op+" .live-responses-table tbody .response-col_description pre")))
	require.NoError(t, err)
	return status, body
}
