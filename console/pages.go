package console

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"
)

// NonceMeta is the name of the <meta> element the index page carries with
// its response's CSP nonce, for scripts that create <style> elements
// (xterm.js does) to stamp on them: style-src allows 'self' and that
// nonce, never inline <style> elements. Inline style attributes are
// allowed (style-src-attr): xterm.js colours 24-bit and minimum-contrast
// text with them, and an attribute can restyle but never run code.
const NonceMeta = "csp-nonce"

// page is one file of the built console, read once.
type page struct {
	body  []byte
	ctype string
	etag  string
	// immutable: the name carries a content hash (Vite writes those
	// under assets/), so browsers may keep it for a year.
	immutable bool
}

// Pages serves the built console (index.html and its assets, from fsys)
// under Prefix+"/": a path naming no file gets index.html so that the
// pages' own routing works, except under Prefix+"/api/". Every answer
// carries a Content-Security-Policy allowing only the server itself,
// nosniff, Referrer-Policy same-origin and X-Frame-Options DENY.
// index.html is never cached without revalidation; assets/ is cached for
// a year. A file that cannot be read is left out.
func Pages(fsys fs.FS) http.Handler {
	files := map[string]*page{}
	_ = fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil
		}
		sum := sha256.Sum256(b)
		files[name] = &page{
			body: b, ctype: contentType(name),
			etag:      `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`,
			immutable: strings.HasPrefix(name, "assets/"),
		}
		return nil
	})
	index := files["index.html"]
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "Method not allowed.", http.StatusMethodNotAllowed)
			return
		}
		rel, ok := strings.CutPrefix(r.URL.Path, Prefix+"/")
		if !ok || strings.HasPrefix(rel, "api/") || rel == "api" {
			h.Set("Content-Security-Policy", csp(r, ""))
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "NotFound", "message": "No such console API."})
			return
		}
		f := files[path.Clean("/" + rel)[1:]]
		if f == nil || f == index {
			serveIndex(w, r, index)
			return
		}
		h.Set("Content-Security-Policy", csp(r, ""))
		h.Set("Content-Type", f.ctype)
		h.Set("ETag", f.etag)
		if f.immutable {
			h.Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			h.Set("Cache-Control", "no-cache")
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
	})
}

// serveIndex answers index.html with a fresh CSP nonce in the header and
// in <meta name="csp-nonce">. It has no validator: a revalidated copy
// would hold an old nonce.
func serveIndex(w http.ResponseWriter, r *http.Request, index *page) {
	h := w.Header()
	if index == nil {
		h.Set("Content-Security-Policy", csp(r, ""))
		http.Error(w, "The console is not built: run make web.", http.StatusNotFound)
		return
	}
	var n [16]byte
	_, _ = rand.Read(n[:])
	nonce := base64.StdEncoding.EncodeToString(n[:])
	body := injectNonce(index.body, nonce)
	h.Set("Content-Security-Policy", csp(r, nonce))
	h.Set("Content-Type", index.ctype)
	h.Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// The console's expressions are compiled when first used: every postern
// command links this package, and most never serve a page.
var headTag = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?i)<head(\s[^>]*)?>`) })

// injectNonce puts <meta name="csp-nonce" content="nonce"> first in the
// page's <head>, or first in the page when it has none.
func injectNonce(page []byte, nonce string) []byte {
	meta := []byte(`<meta name="` + NonceMeta + `" content="` + nonce + `">`)
	at := 0
	if loc := headTag().FindIndex(page); loc != nil {
		at = loc[1]
	}
	out := make([]byte, 0, len(page)+len(meta))
	out = append(out, page[:at]...)
	out = append(out, meta...)
	return append(out, page[at:]...)
}

// hostPattern is a Host header fit to be repeated in a CSP.
var hostPattern = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$`)
})

// csp allows the server's own origin only: its scripts, styles (and
// <style> elements carrying nonce), images and fonts (also data: ones,
// which bundlers inline), and connections to itself, the terminal's
// WebSocket included.
func csp(r *http.Request, nonce string) string {
	style := "style-src 'self'"
	if nonce != "" {
		style += " 'nonce-" + nonce + "'"
	}
	connect := "connect-src 'self'"
	if hostPattern().MatchString(r.Host) {
		connect += " wss://" + r.Host
	}
	return strings.Join([]string{
		"default-src 'none'", "script-src 'self'", style, "style-src-attr 'unsafe-inline'", connect,
		"img-src 'self' data:", "font-src 'self' data:", "manifest-src 'self'",
		"base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'",
	}, "; ")
}

// types are the content types of what a build holds, so that answers do
// not depend on the machine's MIME tables.
var types = map[string]string{
	".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
	".css": "text/css; charset=utf-8", ".json": "application/json", ".map": "application/json",
	".svg": "image/svg+xml", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
	".webp": "image/webp", ".ico": "image/x-icon", ".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf",
	".txt": "text/plain; charset=utf-8", ".wasm": "application/wasm", ".webmanifest": "application/manifest+json",
	".cast": "application/x-asciicast",
}

func contentType(name string) string {
	ext := strings.ToLower(path.Ext(name))
	if t, ok := types[ext]; ok {
		return t
	}
	if t := mime.TypeByExtension(ext); t != "" {
		return t
	}
	return "application/octet-stream"
}
