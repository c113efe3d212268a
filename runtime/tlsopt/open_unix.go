//go:build unix

package tlsopt

import "syscall"

// openFlags open a file option without blocking: opening a FIFO for reading would wait for a
// writer (and a tty or some devices for a carrier), holding the config load, or a handshake,
// forever. readFile refuses anything but a regular file once open.
const openFlags = syscall.O_RDONLY | syscall.O_NONBLOCK
