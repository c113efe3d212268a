package connector

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, []byte("ilpAddress: test.x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("ilpAddress: 'not an address'\nspread: lots\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		path        string
		env         []string
		wantErr     []string // substrings of the error, all required
		wantWarning string
		wantAddr    string
	}{
		{name: "env", env: []string{"CONNECTOR_ILP_ADDRESS=test.env", "HOME=/root"}, wantAddr: "test.env"},
		{name: "env with a typo", env: []string{"CONNECTOR_ILP_ADDRESS=test.env", "CONNECTOR_SPRED=0.1"}, wantAddr: "test.env", wantWarning: "CONNECTOR_SPREAD"},
		{name: "bad env lists every problem", env: []string{"CONNECTOR_MAX_HOLD_TIME=soon", "CONNECTOR_SPREAD=lots"},
			wantErr: []string{"environment", "CONNECTOR_MAX_HOLD_TIME", "CONNECTOR_SPREAD"}},
		{name: "file", path: good, env: []string{"CONNECTOR_SPREAD=0.1"}, wantAddr: "test.x", wantWarning: "CONNECTOR_SPREAD is ignored"},
		{name: "bad file", path: bad, wantErr: []string{bad}},
		{name: "missing file", path: filepath.Join(dir, "nope.yaml"), wantErr: []string{"nope.yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, w, warnings, err := LoadConfig(tt.path, tt.env)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatal("no error")
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not mention %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.ILPAddress != tt.wantAddr || (tt.path != "") != (w != nil) {
				t.Errorf("address %q, watcher %v", cfg.ILPAddress, w)
			}
			if tt.wantWarning != "" && !strings.Contains(strings.Join(warnings, "\n"), tt.wantWarning) {
				t.Errorf("warnings %q lack %q", warnings, tt.wantWarning)
			}
		})
	}
}
