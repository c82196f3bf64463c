package consoleterm

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestKnownHostKeys(t *testing.T) {
	key := func() ssh.PublicKey {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		k, err := ssh.NewPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	reported, other := key(), key()
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(reported)))
	cb, algos, err := knownHostKeys([]string{"garbage", line})
	if err != nil {
		t.Fatal(err)
	}
	if len(algos) != 1 || algos[0] != ssh.KeyAlgoED25519 {
		t.Errorf("algorithms %v, want [ssh-ed25519]", algos)
	}
	if err := cb("h", nil, reported); err != nil {
		t.Errorf("the reported key is refused: %v", err)
	}
	if err := cb("h", nil, other); !errors.Is(err, errHostKey) {
		t.Errorf("another key: %v, want errHostKey", err)
	}
	if _, _, err := knownHostKeys(nil); err == nil {
		t.Errorf("no reported keys: accepted (trust on first use)")
	}
}

func TestParseRequestAndControl(t *testing.T) {
	for _, tt := range []struct {
		query string
		ok    bool
	}{
		{"instanceId=i-0123456789abcdef0&osUser=alice&cols=100&rows=30", true},
		{"instanceId=i-0123456789abcdef0&osUser=alice", true},
		{"instanceId=web&osUser=alice", false},
		{"instanceId=i-0123456789abcdef0&osUser=al%20ice", false},
		{"instanceId=i-0123456789abcdef0&osUser=alice&cols=0", false},
		{"instanceId=i-0123456789abcdef0&osUser=alice&rows=x", false},
	} {
		_, err := parseRequest(httptest.NewRequest("GET", Path+"?"+tt.query, nil))
		if (err == nil) != tt.ok {
			t.Errorf("parseRequest(%s): %v, want ok=%v", tt.query, err, tt.ok)
		}
	}
	if m, err := parseControl([]byte(`{"type":"resize","cols":120,"rows":40}`)); err != nil || m.Cols != 120 || m.Rows != 40 {
		t.Errorf("resize: %+v, %v", m, err)
	}
	for _, bad := range []string{`{"type":"paste"}`, `not json`, `{"type":"resize","cols":5000,"rows":1}`} {
		if _, err := parseControl([]byte(bad)); err == nil {
			t.Errorf("parseControl(%s) accepted", bad)
		}
	}
}
