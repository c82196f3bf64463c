package main

import (
	"bytes"
	"path/filepath"
	"testing"
)

func TestUsageAndDoubt(t *testing.T) {
	for _, args := range [][]string{{}, {"a", "b", "c"}, {"--bogus", "alice"}} {
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != 2 || out.Len() != 0 {
			t.Errorf("%q: exit %d, stdout %q; want 2 and nothing", args, code, out.String())
		}
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"--help"}, &out, &errOut); code != 0 || out.Len() != 0 {
		t.Errorf("--help: exit %d, stdout %q", code, out.String())
	}
	// No configuration: nothing printed, and still exit 0 for sshd.
	missing := filepath.Join(t.TempDir(), "helper.json")
	out.Reset()
	if code := run([]string{"--config", missing, "alice", "SHA256:x"}, &out, &errOut); code != 0 || out.Len() != 0 {
		t.Errorf("missing config: exit %d, stdout %q; want 0 and nothing", code, out.String())
	}
}
