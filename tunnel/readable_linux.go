package tunnel

import (
	"os"
	"syscall"
)

// waitReadable blocks until a read from the socket would not block: data,
// end of stream or an error is waiting. It peeks instead of reading, so the
// caller needs no buffer while it waits. A pending socket error (a reset)
// is consumed by the peek, so it is returned here; so are the connection's
// errors when the read deadline passes or the connection is closed.
func waitReadable(rc syscall.RawConn) error {
	var b [1]byte
	var sockErr error
	err := rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch err {
		case syscall.EAGAIN:
			return false
		case nil, syscall.EINTR:
			return true
		}
		sockErr = os.NewSyscallError("recvfrom", err)
		return true
	})
	if err != nil {
		return err
	}
	return sockErr
}
