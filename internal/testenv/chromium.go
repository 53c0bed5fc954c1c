package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// EnvChromium names a Chromium (or Chrome) binary for the browser tests; without it the
// first of chromium, chromium-browser and google-chrome on PATH is used.
const EnvChromium = "CHROMIUM"

// Chromium returns the path of a Chromium binary. None skips t, or fails it under CI=true
// (scripts/test.sh installs Debian's chromium).
func Chromium(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(EnvChromium); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	Missing(t, "no chromium on PATH and %s is not set", EnvChromium)
	return ""
}
