//go:build !unix

package tlsopt

import "os"

// openFlags: no O_NONBLOCK here; readFile still refuses anything but a regular file.
const openFlags = os.O_RDONLY
