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

// Watcher reloads a config file when its content changes. It polls (read and hash) rather
// than relying on file events because Kubernetes mounts ConfigMaps through symlink swaps,
// which event-based watchers miss or see twice; a config file is small, so reading it once a
// second costs nothing. Only valid configs are delivered: an invalid file is reported once
// per distinct content, and the last good config stays current.
type Watcher struct {
	path     string
	interval time.Duration
	current  atomic.Pointer[Config]
	lastSum  [sha256.Size]byte
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
	w := &Watcher{path: path, interval: interval, lastSum: sha256.Sum256(data)}
	w.current.Store(c)
	return w, nil
}

// Current returns the last valid config. Safe for concurrent use.
func (w *Watcher) Current() *Config { return w.current.Load() }

// Run polls the file until ctx is done. onChange gets every new valid config (with the
// previous one, so the caller can Diff them); onError gets every new invalid content or
// read error. Both are called from Run's goroutine, one at a time; either may be nil.
// Run returns ctx.Err().
func (w *Watcher) Run(ctx context.Context, onChange func(old, new *Config), onError func(error)) error {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		old, c, err := w.poll()
		switch {
		case err != nil:
			// A read error repeats every tick while it lasts (a file being replaced); report
			// it once until something changes.
			if err.Error() != lastErr && onError != nil {
				onError(err)
			}
			lastErr = err.Error()
		case c != nil:
			lastErr = ""
			if onChange != nil {
				onChange(old, c)
			}
		}
	}
}

// poll reads the file once. It returns the new config when the content changed and is
// valid, an error when it changed and is invalid or cannot be read, and nothing otherwise.
func (w *Watcher) poll() (old, c *Config, err error) {
	data, err := readLimited(w.path)
	if err != nil {
		return nil, nil, err
	}
	sum := sha256.Sum256(data)
	if sum == w.lastSum {
		return nil, nil, nil
	}
	w.lastSum = sum
	c, err = FromData(data, "config file "+w.path)
	if err != nil {
		return nil, nil, errors.Join(err, errors.New("config: keeping the last valid config"))
	}
	old = w.current.Swap(c)
	return old, c, nil
}
