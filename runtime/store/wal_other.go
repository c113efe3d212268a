//go:build !linux

package store

import "os"

// fdatasync falls back to fsync where the platform has no fdatasync in package syscall.
func fdatasync(f *os.File) error { return f.Sync() }

// openDirect: direct I/O is used on Linux only.
func openDirect(string) *os.File { return nil }
