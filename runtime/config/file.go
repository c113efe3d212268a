package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	yamlv2 "go.yaml.in/yaml/v2"
	"sigs.k8s.io/yaml"

	"github.com/ilpfleet/ilpfleet/internal/suggest"
)

// maxFileSize bounds what FromFile reads: a connector config is kilobytes, and a wrong path
// (a log, a device) must not be read into memory whole.
const maxFileSize = 16 << 20

// FromFile reads a YAML or JSON file holding the JS connector's config keys (camelCase:
// ilpAddress, accounts, routes, spread, …; see docs/configuration.md) and validates it.
// Keys left out take the defaults. On error the config is nil.
func FromFile(path string) (*Config, error) {
	data, err := readLimited(path)
	if err != nil {
		return nil, err
	}
	return FromData(data, "config file "+path)
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: reading %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("config: %s is larger than %d bytes; is it the right file?", path, maxFileSize)
	}
	return data, nil
}

// FromData is FromFile for a document already in memory (a ConfigMap key, a test); name says
// where it came from in error messages.
func FromData(data []byte, name string) (*Config, error) {
	source := func(*FieldError) string { return name }
	doc, yk, err := documentJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	keys, values, ok := orderedObject(doc)
	if !ok {
		return nil, fmt.Errorf("%s: expected a mapping of config keys (ilpAddress, accounts, …) at the top", name)
	}
	c := Defaults()
	var l fieldErrors
	var given sourceFlags
	known := settingKeys()
	written := keys
	if yk != nil {
		written = yk.top // the JSON form of a YAML document has one of each key
	}
	checkRepeatedKeys(written, &l)
	for i, k := range keys {
		s, ok := settingByKey(k)
		if !ok {
			l.add("", k, "", "unknown config key%s; known keys: %s", suggest.DidYouMean(k, known), strings.Join(known, ", "))
			continue
		}
		given.note(k)
		s.apply(c, values[i], &l)
	}
	if yk != nil {
		c.AccountOrder = yk.accounts
		checkRepeatedIDs(yk.accounts, &l) // the YAML decoder kept the last of them silently
	}
	return finish(c, given, l, source)
}

// checkRepeatedKeys refuses a top-level key given more than once, once per key: decoders keep
// the last, so a second accounts mapping would silently replace the first whole.
func checkRepeatedKeys(keys []string, l *fieldErrors) {
	times := map[string]int{}
	for _, k := range keys {
		times[k]++
	}
	for _, k := range keys {
		if n := times[k]; n > 1 {
			l.add("", k, "", "given %s", repeatedKey(n))
		}
		times[k] = 0
	}
}

// repeatedKey says how often a key is given and what to do about it.
func repeatedKey(n int) string {
	if n == 2 {
		return "twice; a decoder would silently keep the last one — remove one"
	}
	return strconv.Itoa(n) + " times; a decoder would silently keep the last one — keep only one"
}

func settingByKey(k string) (setting, bool) {
	for _, s := range settings {
		if s.key == k {
			return s, true
		}
	}
	return setting{}, false
}

// documentJSON turns the file into JSON. A JSON document is used as is, which keeps big
// integers exact; YAML goes through sigs.k8s.io/yaml. A YAML mapping loses its order and its
// repeated keys on the way, so the keys are read separately (yk; nil for a JSON document).
func documentJSON(data []byte) (doc json.RawMessage, yk *yamlKeys, err error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return json.RawMessage(`{}`), nil, nil
	}
	if trimmed[0] == '{' {
		return trimmed, nil, checkJSONDocument(data)
	}
	doc, err = yaml.YAMLToJSON(data)
	if err != nil {
		return nil, nil, fmt.Errorf("invalid YAML: %w", err)
	}
	if bytes.Equal(bytes.TrimSpace(doc), []byte("null")) {
		doc = []byte(`{}`)
	}
	// The YAML decoder refuses text that is not UTF-8 and surrogate escapes itself.
	return doc, readYAMLKeys(data), nil
}

// checkJSONDocument refuses a JSON document that is not valid JSON, or whose strings
// encoding/json would silently change: bytes that are not UTF-8, and lone surrogate escapes
// (loneSurrogate), which it decodes as U+FFFD. The error says where, and shows no value.
func checkJSONDocument(data []byte) error {
	if !json.Valid(data) {
		return invalidJSON(data)
	}
	text := string(data)
	if pos, ok := firstInvalidUTF8(text); ok {
		return fmt.Errorf("%s%s", topKeyAt(text, pos), invalidUTF8Problem(text, pos, true))
	}
	if p, ok := surrogateProblem(text); ok {
		pos, _ := loneSurrogate(text)
		return fmt.Errorf("%s%s", topKeyAt(text, pos), p)
	}
	return nil
}

// firstInvalidUTF8 is the byte offset of the first byte of text that is not UTF-8.
func firstInvalidUTF8(text string) (int, bool) {
	for i, r := range text {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(text[i:]); size == 1 {
				return i, true
			}
		}
	}
	return 0, false
}

// topKeyAt is "key: " for the top-level entry of the JSON object text that holds the byte
// offset pos, so that an error names the setting; "" when pos is in no entry's value.
func topKeyAt(text string, pos int) string {
	dec := json.NewDecoder(strings.NewReader(text))
	if _, err := dec.Token(); err != nil { // {
		return ""
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		start := dec.InputOffset()
		var v json.RawMessage
		if dec.Decode(&v) != nil {
			return ""
		}
		if k, ok := tok.(string); ok && int64(pos) >= start && int64(pos) < dec.InputOffset() {
			return k + ": "
		}
	}
	return ""
}

// invalidJSON describes the syntax error of a JSON document with its line and column (a YAML
// document's errors have their line from the YAML decoder).
func invalidJSON(data []byte) error {
	var v any
	err := json.Unmarshal(data, &v)
	if p, ok := jsonProblem(string(data), err); ok {
		return fmt.Errorf("invalid JSON, %s", p)
	}
	return fmt.Errorf("invalid JSON: %v", err)
}

// yamlKeys are the keys of a YAML document's top-level mapping and of its accounts mapping, in
// document order with their repeats, each as the JSON key sigs.k8s.io/yaml makes of it
// (yamlKeyString).
type yamlKeys struct {
	top, accounts []string
}

// readYAMLKeys reads the keys of a YAML document that sigs.k8s.io/yaml turned into JSON, with
// its decoder (go.yaml.in/yaml/v2) into ordered mappings: the keys that the JSON document keeps
// one of, with the same YAML rules. Keys 1, 01, 0x1, 1.0 and "1" are all the account "1" in the
// JSON document, and true, yes and on are "true": reading the keys' text instead would let
// such a repeat through, and one of the accounts silently win.
func readYAMLKeys(data []byte) *yamlKeys {
	var doc yamlv2.MapSlice
	if yamlv2.Unmarshal(data, &doc) != nil {
		return &yamlKeys{}
	}
	yk := &yamlKeys{top: mapKeys(doc)}
	for _, item := range doc {
		if k, _ := yamlKeyString(item.Key); k != "accounts" {
			continue
		}
		yk.accounts = nil // a repeated accounts key is refused; the JSON document has the last
		if m, ok := item.Value.(yamlv2.MapSlice); ok {
			yk.accounts = mapKeys(m)
		}
	}
	return yk
}

func mapKeys(m yamlv2.MapSlice) []string {
	keys := make([]string, 0, len(m))
	for _, item := range m {
		if k, ok := yamlKeyString(item.Key); ok {
			keys = append(keys, k)
		}
	}
	return keys
}

// yamlKeyString is the JSON key sigs.k8s.io/yaml (v1.6.0, convertToJSONableObject) makes of a
// decoded YAML mapping key; ok is false for the kinds of key it refuses.
func yamlKeyString(k any) (string, bool) {
	switch k := k.(type) {
	case string:
		return k, true
	case int:
		return strconv.Itoa(k), true
	case int64:
		return strconv.FormatInt(k, 10), true
	case float64:
		s := strconv.FormatFloat(k, 'g', -1, 32) // 32: as sigs.k8s.io/yaml does
		switch s {
		case "+Inf":
			s = ".inf"
		case "-Inf":
			s = "-.inf"
		case "NaN":
			s = ".nan"
		}
		return s, true
	case bool:
		return strconv.FormatBool(k), true
	}
	return "", false
}
