// Command imagetar writes a one-layer container image as a `docker save` archive that
// `ctr images import` accepts, without a Docker engine or registry. The layer holds one static
// binary at /<name> (the entrypoint) and an empty world-writable /tmp. hack/cluster/image.sh
// uses it for the ilpfleet and pause images of the local cluster.
//
//	imagetar --binary bin/ilpfleet --ref localhost/ilpfleet:dev --out bin/cluster/images/ilpfleet.tar
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

// epoch is the modification time of every entry: a fixed time keeps the image ID stable for the
// same binary, so an unchanged rebuild imports as the same image.
var epoch = time.Unix(0, 0).UTC()

type options struct {
	binary, ref, out, user string
	args                   []string
}

func main() {
	var o options
	flag.StringVar(&o.binary, "binary", "", "static binary to place at /<its base name> as the entrypoint")
	flag.StringVar(&o.ref, "ref", "", "image reference, e.g. localhost/ilpfleet:dev")
	flag.StringVar(&o.out, "out", "", "archive to write")
	flag.StringVar(&o.user, "user", "65532:65532", "user the image runs as (numeric, so runAsNonRoot can check it)")
	flag.Parse()
	o.args = flag.Args()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "imagetar:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.binary == "" || o.ref == "" || o.out == "" {
		return errors.New("--binary, --ref and --out are required")
	}
	bin, err := os.ReadFile(o.binary)
	if err != nil {
		return err
	}
	entry := "/" + filepath.Base(o.binary)
	layer, err := buildLayer(entry, bin)
	if err != nil {
		return err
	}
	config, err := imageConfig(o, entry, digest(layer))
	if err != nil {
		return err
	}
	tmp := o.out + ".tmp"
	if err := writeArchive(tmp, o.ref, config, layer); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, o.out)
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// buildLayer returns the uncompressed layer tar: /tmp and the entrypoint binary.
func buildLayer(entry string, bin []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdrs := []*tar.Header{
		{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777, ModTime: epoch},
		{Typeflag: tar.TypeReg, Name: entry[1:], Mode: 0o755, Size: int64(len(bin)), ModTime: epoch},
	}
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// imageConfig is the image configuration JSON (OCI image-spec config, which Docker shares).
func imageConfig(o options, entry, layerDigest string) ([]byte, error) {
	type execConfig struct {
		User       string   `json:"User,omitempty"`
		Env        []string `json:"Env"`
		Entrypoint []string `json:"Entrypoint"`
		Cmd        []string `json:"Cmd,omitempty"`
	}
	cfg := map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"created":      epoch.Format(time.RFC3339),
		"config": execConfig{
			User:       o.user,
			Env:        []string{"PATH=/"},
			Entrypoint: []string{entry},
			Cmd:        o.args,
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + layerDigest}},
	}
	return json.Marshal(cfg)
}

// writeArchive writes the `docker save` layout: manifest.json, <config>.json, <layer>/layer.tar.
func writeArchive(path, ref string, config, layer []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	configName := digest(config) + ".json"
	layerName := digest(layer) + "/layer.tar"
	manifest, err := json.Marshal([]map[string]any{{
		"Config": configName, "RepoTags": []string{ref}, "Layers": []string{layerName},
	}})
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	files := []struct {
		name string
		data []byte
	}{{configName, config}, {layerName, layer}, {"manifest.json", manifest}}
	for _, e := range files {
		if err := writeFile(tw, e.name, e.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}

func writeFile(tw *tar.Writer, name string, data []byte) error {
	if dir := filepath.Dir(name); dir != "." {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755, ModTime: epoch}); err != nil {
			return err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch}); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}
