package tunneltest_test

import (
	"testing"

	"github.com/postern-dev/postern/tunnel"
	"github.com/postern-dev/postern/tunnel/tunneltest"
)

func TestPair(t *testing.T) {
	tunneltest.TestMessageConn(t, func(t *testing.T) (tunnel.MessageConn, tunnel.MessageConn) {
		a, b := tunneltest.Pair()
		t.Cleanup(func() { a.CloseNow(); b.CloseNow() })
		return a, b
	})
}
