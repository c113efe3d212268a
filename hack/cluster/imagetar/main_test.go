package main

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readArchive returns the regular files of a tar archive by name.
func readArchive(t *testing.T, r io.Reader) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(r)
	for i := 0; i < 100; i++ {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = b
		}
	}
	t.Fatal("archive has too many entries")
	return nil
}

func TestRun(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "ilpfleet")
	if err := os.WriteFile(bin, []byte("\x7fELF fake binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "img.tar")
	if err := run(options{binary: bin, ref: "localhost/ilpfleet:dev", out: out, user: "65532:65532"}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := readArchive(t, f)

	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	if len(manifest) != 1 || len(manifest[0].Layers) != 1 || manifest[0].RepoTags[0] != "localhost/ilpfleet:dev" {
		t.Fatalf("manifest = %+v", manifest)
	}
	var cfg struct {
		Config struct {
			User       string
			Entrypoint []string
		} `json:"config"`
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(files[manifest[0].Config], &cfg); err != nil {
		t.Fatalf("config: %v", err)
	}
	layer := files[manifest[0].Layers[0]]
	sum := sha256.Sum256(layer)
	if got, want := cfg.RootFS.DiffIDs, []string{"sha256:" + hex.EncodeToString(sum[:])}; len(got) != 1 || got[0] != want[0] {
		t.Errorf("diff_ids = %v, want %v (the layer's digest)", got, want)
	}
	if cfg.Config.User != "65532:65532" || strings.Join(cfg.Config.Entrypoint, " ") != "/ilpfleet" {
		t.Errorf("config = %+v", cfg.Config)
	}
	inLayer := readArchive(t, strings.NewReader(string(layer)))
	if string(inLayer["ilpfleet"]) != "\x7fELF fake binary" {
		t.Errorf("layer files = %v, want the binary at /ilpfleet", inLayer)
	}
}

func TestRunRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		o    options
	}{
		{"no binary", options{ref: "localhost/x:1", out: filepath.Join(dir, "a.tar")}},
		{"no ref", options{binary: "x", out: filepath.Join(dir, "b.tar")}},
		{"missing binary", options{binary: filepath.Join(dir, "absent"), ref: "localhost/x:1", out: filepath.Join(dir, "c.tar")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := run(tt.o); err == nil {
				t.Fatal("run succeeded, want an error")
			}
			if _, err := os.Stat(tt.o.out); err == nil {
				t.Error("archive written despite the error")
			}
		})
	}
}
