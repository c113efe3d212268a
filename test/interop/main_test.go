package interop

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The test environment, prepared once by TestMain. A missing tool or a failed build is kept
// as an error that every test needing it reports: these tests never skip silently.
var env struct {
	root        string // the repository root
	jsDir       string // test/interop/js
	nodeModules string // from hack/npm-deps.sh
	ilpfleet    string // the ilpfleet binary built for this run
	nodeErr     error  // node, npm or the npm packages are missing
	buildErr    error  // the ilpfleet binary could not be built
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		return 1
	}
	env.root = filepath.Clean(filepath.Join(wd, "..", ".."))
	env.jsDir = filepath.Join(wd, "js")
	tmp, err := os.MkdirTemp("", "ilpfleet-interop-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		return 1
	}
	defer os.RemoveAll(tmp)

	env.nodeModules, env.nodeErr = installNodeModules()
	env.ilpfleet = filepath.Join(tmp, "ilpfleet")
	env.buildErr = buildIlpfleet(env.ilpfleet)
	return m.Run()
}

// installNodeModules checks for node and npm and runs hack/npm-deps.sh, which installs the
// pinned packages when needed and prints the node_modules folder.
func installNodeModules() (string, error) {
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("%s is not on PATH: the interop tests run the JavaScript Interledger packages and need Node.js >= 18 with npm (Debian: apt-get install nodejs npm)", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(env.root, "hack", "npm-deps.sh"))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("hack/npm-deps.sh: %v\n%s", err, stderr.String())
	}
	dir := strings.TrimSpace(stdout.String())
	if st, err := os.Stat(filepath.Join(dir, "ilp-connector")); err != nil || !st.IsDir() {
		return "", fmt.Errorf("hack/npm-deps.sh printed %q, which has no ilp-connector", dir)
	}
	return dir, nil
}

// buildIlpfleet builds the repository's binary, as a user would, into out.
func buildIlpfleet(out string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, ".")
	cmd.Dir = env.root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build -o %s . (in %s): %v\n%s", out, env.root, err, b)
	}
	return nil
}

// needNode fails the test when node, npm or the npm packages are not there.
func needNode(t *testing.T) {
	t.Helper()
	if env.nodeErr != nil {
		t.Fatalf("cannot run the JavaScript peers: %v", env.nodeErr)
	}
}

// needIlpfleet fails the test when the ilpfleet binary could not be built.
func needIlpfleet(t *testing.T) {
	t.Helper()
	if env.buildErr != nil {
		t.Fatalf("cannot build ilpfleet: %v", env.buildErr)
	}
}
