package consoleterm

import (
	"bytes"
	"errors"
	"fmt"
	"net"

	"golang.org/x/crypto/ssh"
)

// errHostKey marks a host that presented a key its agent did not report.
var errHostKey = errors.New("host key mismatch")

// knownHostKeys returns a callback that accepts exactly the host keys the
// agent reported ("type base64" lines), and the host key algorithms to
// ask for, so that sshd presents one of them. There is no trust on first
// use: no reported key, no connection.
func knownHostKeys(lines []string) (ssh.HostKeyCallback, []string, error) {
	var keys []ssh.PublicKey
	var algos []string
	seen := map[string]bool{}
	add := func(a ...string) {
		for _, x := range a {
			if !seen[x] {
				seen[x] = true
				algos = append(algos, x)
			}
		}
	}
	for _, line := range lines {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			continue // one bad report does not spoil the others
		}
		keys = append(keys, k)
		if k.Type() == ssh.KeyAlgoRSA {
			add(ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256)
		} else {
			add(k.Type())
		}
	}
	if len(keys) == 0 {
		return nil, nil, errors.New("its agent reported no usable SSH host key")
	}
	cb := func(_ string, _ net.Addr, presented ssh.PublicKey) error {
		for _, k := range keys {
			if bytes.Equal(k.Marshal(), presented.Marshal()) {
				return nil
			}
		}
		return fmt.Errorf("%w: the host presented %s %s, which its agent did not report", errHostKey, presented.Type(), ssh.FingerprintSHA256(presented))
	}
	return cb, algos, nil
}
