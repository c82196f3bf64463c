package devsshd

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

// The standard library's syscall package has what a PTY needs on Linux;
// golang.org/x/sys/unix would only rename it.

// openPTY opens a new pseudo-terminal pair. The master stays in Go's
// poller, so that reads on it honour deadlines.
func openPTY() (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	var n uint32
	err = control(master, func(fd uintptr) error {
		var unlock int32
		if err := ioctl(fd, syscall.TIOCSPTLCK, unsafe.Pointer(&unlock)); err != nil {
			return fmt.Errorf("unlock pty: %w", err)
		}
		if err := ioctl(fd, syscall.TIOCGPTN, unsafe.Pointer(&n)); err != nil {
			return fmt.Errorf("pty number: %w", err)
		}
		return nil
	})
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	name := fmt.Sprintf("/dev/pts/%d", n)
	fd, err := syscall.Open(name, syscall.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		master.Close()
		return nil, nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return master, os.NewFile(uintptr(fd), name), nil
}

// setWinsize tells the terminal its size, in characters and pixels.
func setWinsize(f *os.File, cols, rows, width, height uint32) error {
	ws := struct{ row, col, xpixel, ypixel uint16 }{clamp16(rows), clamp16(cols), clamp16(width), clamp16(height)}
	return control(f, func(fd uintptr) error {
		return ioctl(fd, syscall.TIOCSWINSZ, unsafe.Pointer(&ws))
	})
}

func clamp16(v uint32) uint16 {
	return uint16(min(v, 0xffff))
}

// control runs fn on f's descriptor without taking it out of the poller,
// as f.Fd() would.
func control(f *os.File, fn func(fd uintptr) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var fnErr error
	if err := rc.Control(func(fd uintptr) { fnErr = fn(fd) }); err != nil {
		return err
	}
	return fnErr
}

func ioctl(fd, req uintptr, arg unsafe.Pointer) error {
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, req, uintptr(arg)); errno != 0 {
		return errno
	}
	return nil
}
