package config

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync/atomic"
	"time"
)

// DefaultWatchInterval is how often a Watcher looks at its file.
const DefaultWatchInterval = time.Second

// RetryRefused is how long a Watcher waits before offering again a valid config that the
// caller refused (Apply may refuse for a passing reason, such as a port still in use).
const RetryRefused = 30 * time.Second

// Watcher reloads a config file when its content changes. It polls (read and hash) rather
// than relying on file events because Kubernetes mounts ConfigMaps through symlink swaps,
// which event-based watchers miss or see twice; a config file is small, so reading it once a
// second costs nothing.
//
// A new content is used only once two polls in a row read it: an editor that writes the file
// in place can be caught half-way, and a truncated file may still be a valid config with
// fewer accounts, whose links a reload would close. Only valid configs are delivered: an
// invalid file is reported once per distinct content, and the last good config stays
// current. A valid config that the caller refuses stays pending and is offered again every
// RetryRefused until it is taken or the file changes.
type Watcher struct {
	path     string
	interval time.Duration
	current  atomic.Pointer[Config]
	done     [sha256.Size]byte // content in force, or reported invalid: nothing more to do with it
	seen     [sha256.Size]byte // content read at the previous poll and not done yet
	retryAt  time.Time         // when a refused content is offered again
}

// NewWatcher loads path, which must hold a valid config, and returns a Watcher whose Current
// is that config. interval <= 0 means DefaultWatchInterval.
func NewWatcher(path string, interval time.Duration) (*Watcher, error) {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	data, err := readLimited(path)
	if err != nil {
		return nil, err
	}
	c, err := FromData(data, "config file "+path)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	w := &Watcher{path: path, interval: interval, done: sum, seen: sum}
	w.current.Store(c)
	return w, nil
}

// Current returns the config in force: the last valid config its caller took. Safe for
// concurrent use.
func (w *Watcher) Current() *Config { return w.current.Load() }

// Run polls the file until ctx is done. onChange gets every new valid config (with the
// current one, so the caller can Diff them) and returns nil when it is in force, or an error
// to have it offered again later; onError gets every new invalid content or read error. Both
// are called from Run's goroutine, one at a time; onChange is required, onError may be nil.
// Run returns ctx.Err().
func (w *Watcher) Run(ctx context.Context, onChange func(old, new *Config) error, onError func(error)) error {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if err := w.poll(time.Now(), onChange); err != nil {
			// A read error repeats every tick while it lasts (a file being replaced); report
			// it once until something changes.
			if err.Error() != lastErr && onError != nil {
				onError(err)
			}
			lastErr = err.Error()
			continue
		}
		lastErr = ""
	}
}

// poll reads the file once and offers its content to onChange when it is new, valid, read
// the same at the previous poll, and not refused less than RetryRefused ago. It returns an
// error when the content is invalid or cannot be read.
func (w *Watcher) poll(now time.Time, onChange func(old, new *Config) error) error {
	data, err := readLimited(w.path)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	switch {
	case sum == w.done:
		w.seen = sum
		return nil
	case sum != w.seen: // new: read it again at the next poll before using it
		w.seen, w.retryAt = sum, time.Time{}
		return nil
	case now.Before(w.retryAt):
		return nil
	}
	c, err := FromData(data, "config file "+w.path)
	if err != nil {
		w.done = sum
		return errors.Join(err, errors.New("config: keeping the last valid config"))
	}
	if err := onChange(w.current.Load(), c); err != nil {
		w.retryAt = now.Add(RetryRefused)
		return nil
	}
	w.done = sum
	w.current.Store(c)
	return nil
}
