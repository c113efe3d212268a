package middleware

import (
	"slices"
	"sync"
	"time"
)

// maxAlerts bounds memory when peers produce many distinct alerts; the oldest goes first.
// maxAccountAlerts bounds one account's share: its next hop chooses the triggeredBy and
// message of the Rejects that raise them, and could otherwise push every other account's
// alerts out.
const (
	maxAlerts        = 1000
	maxAccountAlerts = 100
)

// Alert is one condition an operator should look at, in the JSON shape of the JS admin API's
// GET /alerts.
type Alert struct {
	ID          int64     `json:"id"`
	AccountID   string    `json:"accountId"`
	TriggeredBy string    `json:"triggeredBy"`
	Message     string    `json:"message"`
	Count       int       `json:"count"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

// Alerts is the connector's alert list, shared by every account's alert middleware and read
// by the admin API. Repeats of one (account, triggeredBy, message) raise its Count.
type Alerts struct {
	mu     sync.Mutex
	clock  Clock
	nextID int64
	list   []*Alert // ascending ID
	byKey  map[alertKey]*Alert
	counts map[string]int // alerts in list per account
}

type alertKey struct{ account, triggeredBy, message string }

func (al *Alert) key() alertKey { return alertKey{al.AccountID, al.TriggeredBy, al.Message} }

// NewAlerts returns an empty list; IDs start at the current Unix time in milliseconds, as in
// JS, so they do not repeat across restarts. A nil clock is the real clock.
func NewAlerts(clock Clock) *Alerts {
	if clock == nil {
		clock = RealClock{}
	}
	return &Alerts{clock: clock, nextID: clock.Now().UnixMilli(), byKey: map[alertKey]*Alert{}, counts: map[string]int{}}
}

// List returns a copy of the alerts, by ascending ID.
func (a *Alerts) List() []Alert {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Alert, len(a.list))
	for i, al := range a.list {
		out[i] = *al
	}
	return out
}

// Dismiss deletes the alert with this ID and reports whether it existed.
func (a *Alerts) Dismiss(id int64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	i := slices.IndexFunc(a.list, func(al *Alert) bool { return al.ID == id })
	if i < 0 {
		return false
	}
	a.remove(i)
	return true
}

// remove deletes list[i].
func (a *Alerts) remove(i int) {
	al := a.list[i]
	delete(a.byKey, al.key())
	if a.counts[al.AccountID]--; a.counts[al.AccountID] == 0 {
		delete(a.counts, al.AccountID)
	}
	a.list = slices.Delete(a.list, i, i+1)
}

func (a *Alerts) add(accountID, triggeredBy, message string) {
	now := a.clock.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if al := a.byKey[alertKey{accountID, triggeredBy, message}]; al != nil {
		al.Count++
		al.UpdatedAt = now
		return
	}
	switch {
	case a.counts[accountID] >= maxAccountAlerts:
		a.remove(slices.IndexFunc(a.list, func(al *Alert) bool { return al.AccountID == accountID }))
	case len(a.list) >= maxAlerts:
		a.remove(0)
	}
	al := &Alert{ID: a.nextID, AccountID: accountID, TriggeredBy: triggeredBy,
		Message: message, Count: 1, CreatedAt: now, UpdatedAt: now}
	a.list = append(a.list, al)
	a.byKey[al.key()] = al
	a.counts[accountID]++
	a.nextID++
}
