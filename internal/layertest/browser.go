package layertest

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/testenv"
)

// Browser starts a headless Chromium (testenv.Chromium: a missing one skips, or fails under
// CI=true) with the flags this offline machine needs and a fresh profile, and returns a
// context for driving it, bounded by two minutes (a bound for a hung page, not a speed
// bound). The browser is stopped when t ends.
func Browser(t *testing.T) context.Context {
	t.Helper()
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(testenv.Chromium(t)), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 1000))
	browserCtx, cancelBrowser := chromedp.NewContext(alloc)
	require.NoError(t, chromedp.Do(browserCtx), "start the browser") // its context must carry no deadline
	ctx, cancel := context.WithTimeout(browserCtx, 2*time.Minute)
	t.Cleanup(func() { cancel(); cancelBrowser(); cancelAlloc() })
	return ctx
}

// Swagger UI's ids of the shared record operations.
const (
	DocsWriteOp = "#operations-records-post_write"
	DocsReadOp  = "#operations-records-get_read_key"
)

// OpenDocs navigates to baseURL's /docs and waits until Swagger UI lists the write; it
// returns the paths of the operations listed, in order.
func OpenDocs(t *testing.T, ctx context.Context, baseURL string) []string {
	t.Helper()
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(baseURL+"/docs"),
		chromedp.WaitVisible(chromedp.CSS(DocsWriteOp+" .opblock-summary")),
	))
	ops, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`[...document.querySelectorAll(".opblock-summary-path")].map(e => e.textContent.replace(/\u200b/g, ""))`))
	require.NoError(t, err)
	return ops
}

// TryItOut opens the operation, presses "Try it out", runs fill, and Executes.
func TryItOut(t *testing.T, ctx context.Context, op string, fill ...chromedp.Action[chromedp.Void]) (status, body string) {
	t.Helper()
	steps := append([]chromedp.Action[chromedp.Void]{
		chromedp.Click(chromedp.CSS(op + " .opblock-summary-control")),
		chromedp.Click(chromedp.CSS(op + " .try-out__btn")),
	}, fill...)
	require.NoError(t, chromedp.Do(ctx, steps...), op)
	return Execute(t, ctx, op)
}

// Execute presses "Execute" on an operation being tried out and returns the status and body
// Swagger UI shows. An earlier answer on the page must have been cleared first (its
// "Clear" button), or it is the one read.
func Execute(t *testing.T, ctx context.Context, op string) (status, body string) {
	t.Helper()
	const answer = " .live-responses-table tbody"
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS(op+" .execute")),
		chromedp.WaitVisible(chromedp.CSS(op+answer+" .response-col_status"))), op)
	status, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(op+answer+" .response-col_status")))
	require.NoError(t, err)
	body, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(op+answer+" .response-col_description pre")))
	require.NoError(t, err)
	return status, body
}

// FillReadKey is the fill step of TryItOut for the read: the {key} parameter.
func FillReadKey(key string) chromedp.Action[chromedp.Void] {
	return chromedp.SendKeys(chromedp.CSS(DocsReadOp+` input[placeholder="key"]`), key)
}
