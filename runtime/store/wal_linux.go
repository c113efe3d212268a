package store

import (
	"os"
	"syscall"
)

// fdatasync flushes a log segment's data. The segments are preallocated, so there is no
// metadata the next read would need and fsync would flush in addition.
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }

// openDirect opens a log segment for direct (O_DIRECT), synchronous (O_DSYNC) writes, or
// returns nil where the file system does not have them (tmpfs). A direct write of the
// preallocated segment's blocks changes no metadata, so O_DSYNC costs one device write with a
// cache flush, as fdatasync did.
func openDirect(path string) *os.File {
	f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_DIRECT|syscall.O_DSYNC, 0)
	if err != nil {
		return nil
	}
	return f
}
