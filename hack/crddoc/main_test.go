package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGuideIsCurrent fails when the field tables of docs/user-guide.md differ from the CRDs.
func TestGuideIsCurrent(t *testing.T) {
	root := filepath.Join("..", "..")
	doc, err := os.ReadFile(filepath.Join(root, "docs", "user-guide.md"))
	if err != nil {
		t.Fatal(err)
	}
	tables, err := render(filepath.Join(root, "config", "crd", "bases"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := splice(doc, tables)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != string(doc) {
		t.Fatal("the field reference of docs/user-guide.md is stale: run go run ./hack/crddoc")
	}
}

// TestEveryFieldDocumented checks that the tables hold every field of a few known paths, that
// an object's children follow it, and that no cell is left undocumented.
func TestEveryFieldDocumented(t *testing.T) {
	tables, err := render(filepath.Join("..", "..", "config", "crd", "bases"))
	if err != nil {
		t.Fatal(err)
	}
	md := string(tables)
	for _, path := range []string{
		"spec.ilpAddress", "spec.store.redis.urlSecretRef.key", "spec.link.btpClient.tokenSecretRef.name",
		"spec.balance.settleThreshold", "spec.targetPrefix", "spec.nextHop", "spec.assetScale", "status.url",
		"status.conditions", "status.secretVersions",
	} {
		if !strings.Contains(md, "| `"+path+"` |") {
			t.Errorf("no row for %s", path)
		}
	}
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "| `") && strings.HasSuffix(line, "|  |") {
			t.Errorf("undocumented field: %s", line)
		}
	}
	if strings.Contains(md, "spec.affinity.nodeAffinity") {
		t.Error("Kubernetes types are expanded; they should be listed once")
	}
}

func TestSpliceNeedsMarkers(t *testing.T) {
	if _, err := splice([]byte("no markers"), []byte("x")); err == nil {
		t.Error("splice accepted a document without markers")
	}
	got, err := splice([]byte("a\n"+beginMarker+"\nold\n"+endMarker+"\nb"), []byte("new\n"))
	if err != nil || string(got) != "a\n"+beginMarker+"\nnew\n"+endMarker+"\nb" {
		t.Errorf("splice = %q, %v", got, err)
	}
}
