package console

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
)

func TestPages(t *testing.T) {
	h := Pages(fstest.MapFS{
		"index.html":                 {Data: []byte("<!doctype html><html><head><title>x</title></head><body>app</body></html>")},
		"assets/index-B1a2c3D4.js":   {Data: []byte("console.log(1)")},
		"assets/index-Zz9y8X7w.css":  {Data: []byte("body{}")},
		"assets/font-Qq1w2e3r.woff2": {Data: []byte("wOF2")},
		"favicon.svg":                {Data: []byte("<svg/>")},
	})
	get := func(path string, hdr map[string]string) *httptest.ResponseRecorder {
		t.Helper()
		r := httptest.NewRequest(http.MethodGet, "https://"+host+path, nil)
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	nonceMeta := regexp.MustCompile(`<head><meta name="csp-nonce" content="([A-Za-z0-9+/=]{24})"><title>`)
	for _, path := range []string{"/console/", "/console/index.html", "/console/instances/i-0123456789abcdef0", "/console/../console/audit"} {
		w := get(path, nil)
		m := nonceMeta.FindStringSubmatch(w.Body.String())
		if w.Code != http.StatusOK || m == nil || !strings.Contains(w.Body.String(), "app") {
			t.Fatalf("GET %s: %d %q; want index.html with a nonce", path, w.Code, w.Body)
		}
		want := map[string]string{
			"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
			"Referrer-Policy": "same-origin", "X-Frame-Options": "DENY", "ETag": "",
		}
		for k, v := range want {
			if got := w.Header().Get(k); got != v {
				t.Errorf("GET %s: %s %q, want %q", path, k, got, v)
			}
		}
		csp := w.Header().Get("Content-Security-Policy")
		for _, d := range []string{"default-src 'none'", "script-src 'self';", "style-src 'self' 'nonce-" + m[1] + "';",
			"connect-src 'self' wss://" + host + ";", "frame-ancestors 'none'", "base-uri 'none'"} {
			if !strings.Contains(csp, d) {
				t.Errorf("GET %s: CSP %q lacks %q", path, csp, d)
			}
		}
		// Only style attributes may be inline (the terminal's 24-bit
		// colours); scripts, <style> elements and everything else may not.
		if strings.Contains(strings.Replace(csp, "style-src-attr 'unsafe-inline'", "", 1), "unsafe") {
			t.Errorf("CSP %q allows unsafe sources", csp)
		}
	}
	if a, b := nonceMeta.FindStringSubmatch(get("/console/", nil).Body.String())[1], nonceMeta.FindStringSubmatch(get("/console/", nil).Body.String())[1]; a == b {
		t.Errorf("two answers share the nonce %s", a)
	}

	for path, ctype := range map[string]string{
		"/console/assets/index-B1a2c3D4.js": "text/javascript; charset=utf-8", "/console/assets/index-Zz9y8X7w.css": "text/css; charset=utf-8",
		"/console/assets/font-Qq1w2e3r.woff2": "font/woff2",
	} {
		w := get(path, nil)
		if w.Code != http.StatusOK || w.Header().Get("Content-Type") != ctype || w.Header().Get("Cache-Control") != "public, max-age=31536000, immutable" {
			t.Errorf("GET %s: %d %v", path, w.Code, w.Header())
		}
		if w.Header().Get("Content-Security-Policy") == "" || w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no security headers: %v", path, w.Header())
		}
		if again := get(path, map[string]string{"If-None-Match": w.Header().Get("ETag")}); again.Code != http.StatusNotModified {
			t.Errorf("GET %s with its ETag: %d, want 304", path, again.Code)
		}
	}
	if w := get("/console/favicon.svg", nil); w.Header().Get("Content-Type") != "image/svg+xml" || w.Header().Get("Cache-Control") != "no-cache" {
		t.Errorf("favicon: %v", w.Header())
	}

	// The API is never answered with the page.
	if w := get("/console/api/nothing", nil); w.Code != http.StatusNotFound || strings.Contains(w.Body.String(), "app") {
		t.Errorf("GET /console/api/nothing: %d %q", w.Code, w.Body)
	}
	r := httptest.NewRequest(http.MethodPost, "https://"+host+"/console/", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /console/: %d", w.Code)
	}
	// A Host that could smuggle directives is left out of the policy.
	r = httptest.NewRequest(http.MethodGet, "https://"+host+"/console/", nil)
	r.Host = "x; script-src *"
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if csp := w.Header().Get("Content-Security-Policy"); strings.Contains(csp, "*") || strings.Contains(csp, "wss:") {
		t.Errorf("CSP with a hostile Host: %q", csp)
	}
}

func TestPagesUnbuilt(t *testing.T) {
	w := httptest.NewRecorder()
	Pages(fstest.MapFS{}).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "https://"+host+"/console/", nil))
	if w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), "make web") {
		t.Errorf("no build: %d %q", w.Code, w.Body)
	}
}
