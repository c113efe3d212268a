package docs

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ilpfleet/ilpfleet/internal/testenv"
)

// block is one fenced code block of a Markdown file.
type block struct {
	file   string // relative to the repository root
	line   int    // of the opening fence, 1-based
	lang   string // the fence's info string: yaml, json, sh, or ""
	text   string // the content, with the fence's indentation removed
	marker string // the docs-test directive just above the block, "" without one
}

func (b block) String() string { return fmt.Sprintf("%s:%d", b.file, b.line) }

// table is one Markdown table; cells keep their Markdown (code spans included).
type table struct {
	file    string
	line    int
	section string // the nearest level-2 heading above it
	header  []string
	rows    [][]string
}

// column returns the index of the header cell named name, or -1.
func (t table) column(name string) int {
	for i, h := range t.header {
		if strings.EqualFold(strings.TrimSpace(h), name) {
			return i
		}
	}
	return -1
}

// doc is what the tests read from one Markdown file.
type doc struct {
	blocks []block
	tables []table
	prose  []string // lines outside code blocks and tables, for their code spans
}

var (
	fenceRe   = regexp.MustCompile("^(\\s*)(```+|~~~+)\\s*([A-Za-z0-9_+-]*)")
	markerRe  = regexp.MustCompile(`^<!--\s*docs-test:\s*(.*?)\s*-->$`)
	headingRe = regexp.MustCompile(`^#{1,6}\s+(.*)$`)
	spanRe    = regexp.MustCompile("`([^`]+)`")
)

// readDoc reads a Markdown file of the repository (path relative to its root).
func readDoc(t *testing.T, rel string) doc {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.Root(), rel))
	if err != nil {
		t.Fatal(err)
	}
	return parseDoc(rel, string(raw))
}

// parseDoc splits Markdown into fenced blocks, tables and prose. A directive is an HTML
// comment `<!-- docs-test: … -->` on the last non-blank line before a fence: readers of the
// rendered page do not see it.
func parseDoc(file, src string) doc {
	var d doc
	lines := strings.Split(src, "\n")
	section, lastNonBlank := "", ""
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if m := fenceRe.FindStringSubmatch(line); m != nil {
			b, end := readBlock(file, lines, i, m)
			if mm := markerRe.FindStringSubmatch(strings.TrimSpace(lastNonBlank)); mm != nil {
				b.marker = mm[1]
			}
			d.blocks = append(d.blocks, b)
			i, lastNonBlank = end, ""
			continue
		}
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "|"):
			tb, end := readTable(file, lines, i)
			tb.section = section
			d.tables = append(d.tables, tb)
			i = end
		case headingRe.MatchString(trimmed):
			if strings.HasPrefix(trimmed, "## ") {
				section = headingRe.FindStringSubmatch(trimmed)[1]
			}
			d.prose = append(d.prose, line)
		default:
			d.prose = append(d.prose, line)
		}
		if trimmed != "" {
			lastNonBlank = trimmed
		}
	}
	return d
}

// readBlock reads the fenced block opening at lines[i]; it returns the block and the index of
// its closing fence.
func readBlock(file string, lines []string, i int, m []string) (block, int) {
	indent, fence := m[1], m[2]
	b := block{file: file, line: i + 1, lang: m[3]}
	var body []string
	j := i + 1
	for ; j < len(lines); j++ {
		if strings.HasPrefix(strings.TrimSpace(lines[j]), fence) {
			break
		}
		body = append(body, strings.TrimPrefix(lines[j], indent))
	}
	b.text = strings.Join(body, "\n") + "\n"
	return b, j
}

// readTable reads the table starting at lines[i]; it returns it and the index of its last row.
func readTable(file string, lines []string, i int) (table, int) {
	tb := table{file: file, line: i + 1, header: splitRow(lines[i])}
	j := i + 1
	for ; j < len(lines) && strings.HasPrefix(strings.TrimSpace(lines[j]), "|"); j++ {
		if j == i+1 { // the |---|---| separator
			continue
		}
		tb.rows = append(tb.rows, splitRow(lines[j]))
	}
	return tb, j - 1
}

// splitRow splits a table row on the pipes that are not escaped (\|) and not in a code span.
func splitRow(line string) []string {
	line = strings.TrimSpace(line)
	line = strings.TrimSuffix(strings.TrimPrefix(line, "|"), "|")
	var cells []string
	var cur strings.Builder
	inSpan := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\' && i+1 < len(line) && line[i+1] == '|':
			cur.WriteByte('|')
			i++
		case c == '`':
			inSpan = !inSpan
			cur.WriteByte(c)
		case c == '|' && !inSpan:
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(cells, strings.TrimSpace(cur.String()))
}

// spans returns the contents of the code spans of s.
func spans(s string) []string {
	var out []string
	for _, m := range spanRe.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

func TestParseDoc(t *testing.T) {
	src := "# Title\n\ntext `a` and `{\"b\":1}`\n\n<!-- docs-test: refused \"bad thing\" -->\n```yaml\nkind: X\n```\n\n" +
		"## Table\n\n| Key | Example |\n|---|---|\n| `k` | `x \\| y` and `z` |\n\n  ```sh\n  echo hi\n  ```\n"
	d := parseDoc("t.md", src)
	if len(d.blocks) != 2 {
		t.Fatalf("blocks: %+v", d.blocks)
	}
	cases := []struct {
		name      string
		got, want string
	}{
		{"yaml lang", d.blocks[0].lang, "yaml"},
		{"yaml text", d.blocks[0].text, "kind: X\n"},
		{"marker", d.blocks[0].marker, `refused "bad thing"`},
		{"yaml line", fmt.Sprint(d.blocks[0].line), "6"},
		{"indented text", d.blocks[1].text, "echo hi\n"},
		{"no marker", d.blocks[1].marker, ""},
		{"escaped pipe", strings.Join(spans(d.tables[0].rows[0][1]), ","), "x | y,z"},
		{"example column", fmt.Sprint(d.tables[0].column("example")), "1"},
		{"prose spans", strings.Join(spans(strings.Join(d.prose, "\n")), ","), `a,{"b":1}`},
	}
	for _, tc := range cases {
		if tc.got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, tc.got, tc.want)
		}
	}
}
