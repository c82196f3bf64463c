package agentproto

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func pipe(t *testing.T) (*Conn, *Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return NewConn(a), NewConn(b)
}

func TestHandshakeProvesIdentity(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	keys := map[string]ed25519.PublicKey{"i-0123456789abcdef0": pub, "i-0fffffffffffffff0": nil}
	keyFor := func(id string) (ed25519.PublicKey, error) {
		k, ok := keys[id]
		if !ok {
			return nil, errors.New("unknown instance")
		}
		return k, nil
	}
	tests := []struct {
		name     string
		claim    string
		key      ed25519.PrivateKey
		accepted bool
	}{
		{"own identity", "i-0123456789abcdef0", priv, true},
		{"another instance's identity", "i-0fffffffffffffff0", priv, false},
		{"stolen id, wrong key", "i-0123456789abcdef0", otherPriv, false},
		{"unknown instance", "i-0000000000000000a", priv, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, agent := pipe(t)
			done := make(chan error, 1)
			go func() {
				_, err := AgentHandshake(agent, tt.claim, tt.key, Report{Hostname: "web-1"}, "test")
				done <- err
			}()
			h, err := ServerHandshake(srv, time.Now(), keyFor)
			if tt.accepted {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if h.Report.Hostname != "web-1" || h.InstanceID != tt.claim {
					t.Errorf("hello = %+v", h)
				}
				if err := srv.Send(TypeWelcome, "", Welcome{InstanceID: h.InstanceID, HeartbeatInterval: time.Second}); err != nil {
					t.Fatal(err)
				}
				if err := <-done; err != nil {
					t.Errorf("agent: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrIdentity) {
				t.Fatalf("err = %v, want ErrIdentity", err)
			}
			srv.Fail("identity not proven")
			if err := <-done; err == nil || !strings.Contains(err.Error(), "identity not proven") {
				t.Errorf("agent saw %v", err)
			}
		})
	}
}

func TestRecvRefusesOversizedAndMalformed(t *testing.T) {
	for name, frame := range map[string][]byte{
		"oversized": binary.BigEndian.AppendUint32(nil, MaxMessage+1),
		"malformed": append(binary.BigEndian.AppendUint32(nil, 3), "{x}"...),
		"untyped":   append(binary.BigEndian.AppendUint32(nil, 2), "{}"...),
	} {
		t.Run(name, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			go a.Write(frame)
			if _, err := NewConn(b).Recv(); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func TestSendRecvRoundTrip(t *testing.T) {
	x, y := pipe(t)
	go x.Send(TypeAck, "push-1", Ack{Error: "no such user"})
	env, err := y.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var ack Ack
	if env.Type != TypeAck || env.ID != "push-1" || env.Decode(&ack) != nil || ack.Error != "no such user" {
		t.Errorf("got %+v %+v", env, ack)
	}
}
