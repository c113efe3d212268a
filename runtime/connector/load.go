package connector

import (
	"fmt"
	"strings"

	"github.com/ilpfleet/ilpfleet/runtime/config"
)

// LoadConfig loads a config the way `ilpfleet connector` does. With a path, the file (YAML or
// JSON) is read and a Watcher of it returned, and CONNECTOR_* variables in environ are reported
// as ignored; without one, the config comes from environ's CONNECTOR_* variables (os.Environ
// form), with a warning for every unknown one. A bad config is an error listing every problem.
func LoadConfig(path string, environ []string) (*config.Config, *config.Watcher, []string, error) {
	if path != "" {
		w, err := config.NewWatcher(path, 0)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("invalid configuration in %s:\n%w", path, err)
		}
		var warnings []string
		for _, kv := range environ {
			if strings.HasPrefix(kv, config.EnvPrefix) {
				name, _, _ := strings.Cut(kv, "=")
				warnings = append(warnings, fmt.Sprintf("%s is ignored: the configuration comes from %s", name, path))
			}
		}
		return w.Current(), w, warnings, nil
	}
	cfg, warnings, err := config.FromEnviron(environ)
	if err != nil {
		return nil, nil, warnings, fmt.Errorf("invalid configuration in the environment:\n%w", err)
	}
	return cfg, nil, warnings, nil
}
