package store

import (
	"os"
	"syscall"
)

// fdatasync flushes a log segment's data. The segments are preallocated, so there is no
// metadata the next read would need and fsync would flush in addition.
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
