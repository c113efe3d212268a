package config

import (
	"bytes"
	"encoding/json"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/suggest"
)

// ParseAccount reads one account object in the JS shape (an entry of CONNECTOR_ACCOUNTS) and
// returns it with its JS defaults filled in. Every problem is reported, as *FieldErrors
// joined with errors.Join, each naming the account id and the field.
func ParseAccount(id string, data []byte) (Account, error) {
	var l fieldErrors
	if isJSONObject(data) {
		if p, ok := surrogateProblem(string(data)); ok {
			l.add(id, "(account)", "", "%s", p)
			return Account{}, l.join(nil)
		}
	}
	a := parseAccount(id, data, &l)
	return a, l.join(nil)
}

// accountFields are the keys of an account object (the JS schema, plus deduplicate, which
// the JS README documents).
var accountFields = []string{
	"relation", "plugin", "assetCode", "assetScale", "balance", "maxPacketAmount", "throughput",
	"rateLimit", "deduplicate", "sendRoutes", "receiveRoutes", "options", "ilpAddressSegment",
	"settlementEngine",
}

func parseAccount(id string, data []byte, l *fieldErrors) Account {
	var a Account
	obj, ok := parseObject(data)
	if !ok {
		l.add(id, "(account)", "", "expected a JSON object with relation, plugin, assetCode and assetScale; got %s", jsonKind(data))
		return a
	}
	for _, k := range sortedKeys(obj) {
		if !contains(accountFields, k) {
			l.add(id, k, "", "unknown account setting%s; known settings: %s", suggest.DidYouMean(k, accountFields), strings.Join(accountFields, ", "))
		}
	}
	for _, req := range []string{"relation", "plugin", "assetCode", "assetScale"} {
		if _, ok := obj[req]; !ok {
			l.add(id, req, "", "required (the JS connector requires relation, plugin, assetCode and assetScale)")
		}
	}
	str := func(k string, dst *string) {
		if raw, ok := obj[k]; ok {
			if s, ok := rawString(raw); ok {
				*dst = s
			} else {
				l.addRaw(id, k, raw, "expected a string")
			}
		}
	}
	var relation string
	str("relation", &relation)
	a.Relation = Relation(relation)
	str("plugin", &a.Plugin)
	str("assetCode", &a.AssetCode)
	str("ilpAddressSegment", &a.ILPAddressSegment)
	if raw, ok := obj["assetScale"]; ok {
		v, problem := rawInt(raw, 0, 255)
		if problem != "" {
			l.addRaw(id, "assetScale", raw, "%s", problem)
		}
		a.AssetScale = uint8(v)
	}
	a.SendRoutes = optBool(id, "sendRoutes", obj, l)
	a.ReceiveRoutes = optBool(id, "receiveRoutes", obj, l)
	if raw, ok := obj["maxPacketAmount"]; ok {
		v, problem := rawAmount(raw)
		if problem != "" {
			l.addRaw(id, "maxPacketAmount", raw, "%s", problem)
		}
		a.MaxPacketAmount = &v
	}
	if raw, ok := obj["options"]; ok {
		if !isJSONObject(raw) {
			l.add(id, "options", "", "expected a JSON object (the plugin's options); got %s", jsonKind(raw))
		}
		a.Options = json.RawMessage(canonicalJSON(raw))
	}
	a.Balance = parseBalance(id, obj["balance"], l)
	a.Throughput = parseThroughput(id, obj["throughput"], l)
	a.RateLimit = parseRateLimit(id, obj["rateLimit"], l)
	a.Deduplicate = parseDeduplicate(id, obj["deduplicate"], l)
	a.SettlementEngine = parseSettlementEngine(id, obj["settlementEngine"], l)
	return a
}

func optBool(id, k string, obj map[string]json.RawMessage, l *fieldErrors) *bool {
	raw, ok := obj[k]
	if !ok {
		return nil
	}
	v, ok := rawBool(raw)
	if !ok {
		l.addRaw(id, k, raw, "expected true or false")
	}
	return &v
}

// subObject parses an optional nested object and checks its keys. A value that is not an
// object is named by its kind, not quoted: a settlementEngine written as a URL string may hold
// a password.
func subObject(id, name string, raw json.RawMessage, keys []string, l *fieldErrors) (map[string]json.RawMessage, bool) {
	if raw == nil {
		return nil, false
	}
	obj, ok := parseObject(raw)
	if !ok {
		l.add(id, name, "", "expected a JSON object with %s; got %s", strings.Join(keys, ", "), jsonKind(raw))
		return nil, false
	}
	for _, k := range sortedKeys(obj) {
		if !contains(keys, k) {
			l.add(id, name+"."+k, "", "unknown setting%s; known settings: %s", suggest.DidYouMean(k, keys), strings.Join(keys, ", "))
		}
	}
	return obj, true
}

func parseBalance(id string, raw json.RawMessage, l *fieldErrors) *Balance {
	obj, ok := subObject(id, "balance", raw, []string{"minimum", "maximum", "settleThreshold", "settleTo"}, l)
	if !ok {
		return nil
	}
	b := &Balance{}
	const want = `expected an integer string (e.g. "1000000" or "-500"), "-Infinity" or "Infinity"`
	if r, ok := obj["minimum"]; ok {
		if v, ok := rawBound(r); !ok {
			l.addRaw(id, "balance.minimum", r, want)
		} else if v.inf >= 0 { // "-Infinity" is the JS default: no minimum
			m := v.clamp()
			b.Minimum = &m
		}
	}
	if r, ok := obj["maximum"]; !ok {
		l.add(id, "balance.maximum", "", `required when balance is set (use "Infinity" for no maximum)`)
	} else if v, ok := rawBound(r); !ok {
		l.addRaw(id, "balance.maximum", r, want)
	} else if v.inf <= 0 {
		m := v.clamp()
		b.Maximum = &m
	}
	if r, ok := obj["settleThreshold"]; ok {
		v, ok := rawBound(r)
		switch {
		case !ok || v.inf > 0:
			l.addRaw(id, "balance.settleThreshold", r, `expected an integer string (e.g. "-1000") or "-Infinity"`)
		case v.inf == 0:
			if n, ok := v.exact(); ok {
				b.SettleThreshold = &n
			} else {
				l.addRaw(id, "balance.settleThreshold", r, "out of range: expected an integer within ±%d", int64(math.MaxInt64))
			}
		}
	}
	if r, ok := obj["settleTo"]; ok {
		v, ok := rawBound(r)
		n, exact := v.exact()
		if !ok || !exact {
			l.addRaw(id, "balance.settleTo", r, "expected an integer string within ±%d (default \"0\")", int64(math.MaxInt64))
		}
		b.SettleTo = n
	}
	return b
}

func parseThroughput(id string, raw json.RawMessage, l *fieldErrors) *Throughput {
	obj, ok := subObject(id, "throughput", raw, []string{"refillPeriod", "incomingAmount", "outgoingAmount"}, l)
	if !ok {
		return nil
	}
	t := &Throughput{RefillPeriod: DefaultThroughputRefillPeriod}
	if r, ok := obj["refillPeriod"]; ok {
		d, problem := rawMillis(r, 100)
		if problem != "" {
			l.addRaw(id, "throughput.refillPeriod", r, "%s (JS schema minimum)", problem)
		}
		t.RefillPeriod = d
	}
	for _, k := range []string{"incomingAmount", "outgoingAmount"} {
		r, ok := obj[k]
		if !ok {
			continue
		}
		v, problem := rawAmount(r)
		if problem != "" {
			l.addRaw(id, "throughput."+k, r, "%s", problem)
		}
		if k == "incomingAmount" {
			t.IncomingAmount = &v
		} else {
			t.OutgoingAmount = &v
		}
	}
	return t
}

func parseRateLimit(id string, raw json.RawMessage, l *fieldErrors) *RateLimit {
	obj, ok := subObject(id, "rateLimit", raw, []string{"refillPeriod", "refillCount", "capacity"}, l)
	if !ok {
		return nil
	}
	r := DefaultRateLimit()
	if v, ok := obj["refillPeriod"]; ok {
		d, problem := rawMillis(v, 100)
		if problem != "" {
			l.addRaw(id, "rateLimit.refillPeriod", v, "%s (JS schema minimum)", problem)
		}
		r.RefillPeriod = d
	}
	if v, ok := obj["refillCount"]; ok {
		n, problem := rawInt(v, 1, math.MaxInt64)
		if problem != "" {
			l.addRaw(id, "rateLimit.refillCount", v, "%s", problem)
		}
		r.RefillCount = uint64(n)
	}
	r.Capacity = r.RefillCount // JS: capacity defaults to refillCount
	if v, ok := obj["capacity"]; ok {
		n, problem := rawInt(v, 0, math.MaxInt64)
		if problem != "" {
			l.addRaw(id, "rateLimit.capacity", v, "%s", problem)
		}
		r.Capacity = uint64(n)
	}
	return &r
}

func parseDeduplicate(id string, raw json.RawMessage, l *fieldErrors) *Deduplicate {
	obj, ok := subObject(id, "deduplicate", raw, []string{"cleanupInterval", "packetLifetime"}, l)
	if !ok {
		return nil
	}
	d := DefaultDeduplicate()
	for _, f := range []struct {
		k   string
		dst *time.Duration
	}{{"cleanupInterval", &d.CleanupInterval}, {"packetLifetime", &d.PacketLifetime}} {
		k, dst := f.k, f.dst
		if v, ok := obj[k]; ok {
			ms, problem := rawMillis(v, 1)
			if problem != "" {
				l.addRaw(id, "deduplicate."+k, v, "%s", problem)
			}
			*dst = ms
		}
	}
	return &d
}

// parseSettlementEngine reads {"url": "http://…"}; Validate checks the URL.
func parseSettlementEngine(id string, raw json.RawMessage, l *fieldErrors) *SettlementEngine {
	obj, ok := subObject(id, "settlementEngine", raw, []string{"url", "settleEvery"}, l)
	if !ok {
		return nil
	}
	se := &SettlementEngine{}
	if r, ok := obj["url"]; !ok {
		l.add(id, "settlementEngine.url", "", "required: the base URL of the settlement engine, e.g. http://xrp-engine:3000")
	} else if se.URL, ok = rawString(r); !ok {
		l.addRaw(id, "settlementEngine.url", r, "expected a string")
	}
	if r, ok := obj["settleEvery"]; ok {
		ms, problem := rawMillis(r, 1000)
		if problem != "" {
			l.addRaw(id, "settlementEngine.settleEvery", r, "%s", problem)
		}
		se.SettleEvery = ms
	}
	return se
}

// parseAccounts reads the CONNECTOR_ACCOUNTS object, keeping the order of its keys (the JS
// connector's "first parent" is the first in that order).
func parseAccounts(raw json.RawMessage, l *fieldErrors) (map[string]Account, []string) {
	keys, values, ok := orderedObject(raw)
	if !ok {
		l.add("", "accounts", "", `expected a JSON object of accounts by id, e.g. {"up":{"relation":"parent",...}}; got %s`, jsonKind(raw))
		return map[string]Account{}, nil
	}
	accounts := make(map[string]Account, len(keys))
	order := make([]string, 0, len(keys))
	checkRepeatedIDs(keys, l)
	for i, id := range keys {
		if _, dup := accounts[id]; dup {
			continue
		}
		accounts[id] = parseAccount(id, values[i], l)
		order = append(order, id)
	}
	return accounts, order
}

// checkRepeatedIDs refuses an account id given more than once, once per id. JS's JSON.parse
// (and a YAML decoder) keeps the last object: with limits and credentials at stake, which one
// was meant is the user's call, not a parser's.
func checkRepeatedIDs(ids []string, l *fieldErrors) {
	times := map[string]int{}
	for _, id := range ids {
		times[id]++
	}
	for _, id := range ids {
		if times[id] > 1 {
			l.add("", "accounts", "", "account id %q appears %s", id, repeated(times[id]))
		}
		times[id] = 0
	}
}

// repeated says how often an account id appears and what to do about it.
func repeated(n int) string {
	if n == 2 {
		return "twice; JS would silently keep the last one — remove one"
	}
	return strconv.Itoa(n) + " times; JS would silently keep the last one — keep only one"
}

// orderedObject splits a JSON object into its keys and raw values, in document order.
func orderedObject(raw json.RawMessage) ([]string, []json.RawMessage, bool) {
	if !isJSONObject(raw) {
		return nil, nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // {
		return nil, nil, false
	}
	var keys []string
	var values []json.RawMessage
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, false
		}
		k, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, false
		}
		keys = append(keys, k)
		values = append(values, v)
	}
	return keys, values, true
}

func parseObject(raw json.RawMessage) (map[string]json.RawMessage, bool) {
	if !isJSONObject(raw) {
		return nil, false
	}
	var obj map[string]json.RawMessage
	return obj, json.Unmarshal(raw, &obj) == nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
