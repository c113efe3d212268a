package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
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
	doc, order, isYAML, err := documentJSON(data)
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
	for i, k := range keys {
		s, ok := settingByKey(k)
		if !ok {
			l.add("", k, "", "unknown config key%s; known keys: %s", suggest.DidYouMean(k, known), strings.Join(known, ", "))
			continue
		}
		given.note(k)
		s.apply(c, values[i], &l)
	}
	if isYAML {
		c.AccountOrder = order
		checkRepeatedIDs(order, &l) // the YAML decoder kept the last of them silently
	}
	return finish(c, given, l, source)
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
// integers exact; YAML goes through sigs.k8s.io/yaml. YAML mappings lose their order on the
// way, so the order of the accounts (the JS "first parent") is read separately.
func documentJSON(data []byte) (doc json.RawMessage, order []string, isYAML bool, err error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return json.RawMessage(`{}`), nil, false, nil
	}
	if trimmed[0] == '{' {
		if !json.Valid(trimmed) {
			return nil, nil, false, invalidJSON(data)
		}
		return trimmed, nil, false, nil
	}
	doc, err = yaml.YAMLToJSON(data)
	if err != nil {
		return nil, nil, true, fmt.Errorf("invalid YAML: %w", err)
	}
	if bytes.Equal(bytes.TrimSpace(doc), []byte("null")) {
		doc = []byte(`{}`)
	}
	return doc, yamlAccountOrder(data), true, nil
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

// yamlAccountOrder returns the keys of the top-level "accounts" mapping in document order,
// or nil if there is none.
func yamlAccountOrder(data []byte) []string {
	var root yamlv3.Node
	if yamlv3.Unmarshal(data, &root) != nil || len(root.Content) == 0 {
		return nil
	}
	top := root.Content[0]
	if top.Kind != yamlv3.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value != "accounts" || top.Content[i+1].Kind != yamlv3.MappingNode {
			continue
		}
		accounts := top.Content[i+1]
		order := make([]string, 0, len(accounts.Content)/2)
		for j := 0; j+1 < len(accounts.Content); j += 2 {
			order = append(order, accounts.Content[j].Value)
		}
		return order
	}
	return nil
}
