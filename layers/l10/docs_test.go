package l10_test

import (
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/apidoc"
	"github.com/dblayers/dblayers/internal/layertest"
)

// On L10 the docs page needs no key, "Try it out" without one gets the 401, and after
// "Authorize" with an API key the write and its read go through.
func TestDocsInBrowserWithAPIKey(t *testing.T) {
	ctx := layertest.Browser(t)
	f := start(t)

	ops := layertest.OpenDocs(t, ctx, f.tg.URL)
	assert.Subset(t, ops, []string{"/write", "/read/{key}", "/health", "/cache-stats", "/metrics"}, "the operations listed")

	status, _ := layertest.TryItOut(t, ctx, layertest.DocsWriteOp)
	assert.Equal(t, "401", status, "no key yet")

	// Swagger UI's Authorize dialog: the API-key scheme's input and its Authorize button,
	// marked by id to be reached by CSS.
	_, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => {
		document.querySelector(".auth-wrapper .authorize").click();
		return true;
	})()`))
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(".modal-ux .auth-container"))))
	found, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => {
		const c = [...document.querySelectorAll(".modal-ux .auth-container")]
			.find(e => e.textContent.includes("`+apidoc.APIKeyScheme+`"));
		if (!c) return false;
		c.querySelector("input").id = "dblayers-key";
		c.querySelector("button.authorize").id = "dblayers-authorize";
		return true;
	})()`))
	require.NoError(t, err)
	require.True(t, found, "the Authorize dialog offers %s", apidoc.APIKeyScheme)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS("#dblayers-key"), testKey),
		chromedp.Click(chromedp.CSS("#dblayers-authorize")),
		chromedp.Click(chromedp.CSS(".modal-ux .btn-done")),
	))

	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS(layertest.DocsWriteOp+" .btn-clear"))))
	status, body := layertest.Execute(t, ctx, layertest.DocsWriteOp)
	assert.Equal(t, "200", status, body)
	assert.Contains(t, body, `"success": true`)

	status, body = layertest.TryItOut(t, ctx, layertest.DocsReadOp, layertest.FillReadKey("user:1"))
	assert.Equal(t, "200", status, body)
	assert.Contains(t, body, `"value": "Alice"`)
}
