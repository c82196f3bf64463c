// Package web holds the web console's front end: sources in src, built
// by `make web` (npm) into dist, which is committed and embedded so that
// go build never needs npm.
package web

import (
	"embed"
	"io/fs"
)

//go:embed all:dist
var dist embed.FS

// FS returns the built console: index.html and its assets at the root.
func FS() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		// fs.Sub fails only for an invalid path; "dist" is valid.
		panic(err)
	}
	return sub
}
