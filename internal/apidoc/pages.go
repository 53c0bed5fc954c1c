package apidoc

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/dblayers/dblayers/internal/httpapi"
)

// assets are Swagger UI's and Redoc's bundles, fetched by scripts/docs-assets.sh at the
// versions that assets/VERSIONS records.
//
//go:embed assets
var assets embed.FS

// Paths of the documentation endpoints.
const (
	DocumentPath = "/openapi.json"
	SwaggerPath  = "/docs"
	RedocPath    = "/redoc"
	assetsPath   = "/docs/assets/"
)

// The pages use relative URLs, so that they also work behind a proxy that adds a prefix.
var pages = template.Must(template.New("swagger").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.}} · Swagger UI</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({
  url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true,
  persistAuthorization: true, displayRequestDuration: true, tryItOutEnabled: false,
});
</script></body></html>
`))

var _ = template.Must(pages.New("redoc").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.}} · ReDoc</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body { margin: 0; padding: 0; }</style></head>
<body><redoc spec-url="openapi.json"></redoc>
<script src="docs/assets/redoc.standalone.js"></script></body></html>
`))

// mountPages serves the document, the two pages and their assets, all from memory, with
// ETags (a browser revalidates, and gets 304 while the binary is the same), and marked as
// not load for the access log.
func mountPages(r chi.Router, d *document) {
	quiet := func(h http.HandlerFunc) http.Handler { return httpapi.Quiet(h) }
	r.Method(http.MethodGet, DocumentPath, quiet(func(w http.ResponseWriter, req *http.Request) {
		body, etag := d.JSON()
		serve(w, req, "application/json", body, etag, "no-cache")
	}))
	for name, p := range map[string]string{"swagger": SwaggerPath, "redoc": RedocPath} {
		page := render(name, d.info.Title)
		r.Method(http.MethodGet, p, quiet(func(w http.ResponseWriter, req *http.Request) {
			serve(w, req, page.contentType, page.body, page.etag, "no-cache")
		}))
	}
	files := loadAssets()
	r.Method(http.MethodGet, assetsPath+"{file}", quiet(func(w http.ResponseWriter, req *http.Request) {
		f, ok := files[chi.URLParam(req, "file")]
		if !ok {
			httpapi.WriteError(w, req, &httpapi.Error{Status: http.StatusNotFound, Detail: "Not Found"})
			return
		}
		serve(w, req, f.contentType, f.body, f.etag, "public, max-age=86400")
	}))
}

type file struct {
	contentType string
	body        []byte
	etag        string
}

func newFile(contentType string, body []byte) file {
	sum := sha256.Sum256(body)
	return file{contentType: contentType, body: body, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
}

func render(name, title string) file {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, title); err != nil {
		panic("apidoc: render " + name + ": " + err.Error()) // the title is plain text: cannot fail
	}
	return newFile("text/html; charset=utf-8", buf.Bytes())
}

// loadAssets reads the embedded .js and .css files: the pages load only those (the licences
// and VERSIONS are embedded with them, and not served).
func loadAssets() map[string]file {
	files := map[string]file{}
	entries, err := fs.ReadDir(assets, "assets")
	if err != nil {
		panic("apidoc: embedded assets: " + err.Error())
	}
	for _, e := range entries {
		typ := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}[path.Ext(e.Name())]
		if typ == "" {
			continue
		}
		body, err := assets.ReadFile("assets/" + e.Name())
		if err != nil {
			panic("apidoc: embedded asset " + e.Name() + ": " + err.Error())
		}
		files[e.Name()] = newFile(typ, body)
	}
	return files
}

// serve answers with body, or 304 when the client's If-None-Match has etag.
func serve(w http.ResponseWriter, r *http.Request, contentType string, body []byte, etag, cacheControl string) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("ETag", etag)
	h.Set("Cache-Control", cacheControl)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}
