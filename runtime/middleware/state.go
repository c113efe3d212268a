package middleware

import (
	"sync"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/warnlimit"
)

// State is the runtime state of the middlewares that must survive a pipeline rebuild: token
// buckets per account and the dedupe cache. The connector creates one State and passes it to
// every Build; Forget drops an account that was removed from the config.
type State struct {
	mu       sync.Mutex
	accounts map[string]*accountState
	dedupe   *dedupeCache
	// storeLog lets the ERROR of a packet refused because the balance store failed through
	// once per storeLogEvery: while the store is away every packet fails so.
	storeLog warnlimit.Limiter
}

// storeLogEvery is how often a balance store that keeps failing is logged at ERROR.
const storeLogEvery = 10 * time.Second

// NewState returns an empty State.
func NewState() *State {
	return &State{accounts: make(map[string]*accountState), dedupe: newDedupeCache(), storeLog: warnlimit.Limiter{Every: storeLogEvery}}
}

// accountState is one account's slice of State. Buckets are created on first use and then
// reconfigured in place, never replaced, so a limit change keeps the tokens. A build only
// creates them, unconfigured; the pipeline's activation configures them (Pipelines.Activate),
// so a pipeline that never goes into service changes no running limit.
type accountState struct {
	mu            sync.Mutex
	rateLimit     *bucket
	throughputIn  *bucket
	throughputOut *bucket
	// Warnings about the account's config given once for its life, not at every build of its
	// pipeline (each config change, each reconnect).
	warnedUnbounded, warnedThreshold bool
}

// once reports whether the warning *flag guards has not been given yet, and marks it given.
func (a *accountState) once(flag *bool) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	first := !*flag
	*flag = true
	return first
}

func (s *State) account(id string) *accountState {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.accounts[id]
	if !ok {
		a = &accountState{}
		s.accounts[id] = a
	}
	return a
}

// Forget drops the state of a removed account.
func (s *State) Forget(accountID string) {
	s.mu.Lock()
	delete(s.accounts, accountID)
	s.mu.Unlock()
}

// bucket returns *slot, created unconfigured when absent. No running pipeline uses a bucket
// that was absent, so creating one changes no limit in force.
func (a *accountState) bucket(slot **bucket) *bucket {
	a.mu.Lock()
	defer a.mu.Unlock()
	if *slot == nil {
		*slot = &bucket{}
	}
	return *slot
}
