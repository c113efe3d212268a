package docs

import (
	"reflect"
	"strings"
	"testing"
)

// command is one simple shell command of a doc: its leading NAME=value assignments and its words.
type command struct {
	env  map[string]string
	args []string
}

// parseShell splits the shell text of a doc block into simple commands, enough for what the
// docs show: single and double quotes (across lines), backslash-newline continuations,
// comments, and the separators ; && || | and newline. No expansion: "$X" stays as written.
func parseShell(src string) []command {
	var cmds []command
	var words []string
	var cur strings.Builder
	inWord := false
	endWord := func() {
		if inWord {
			words = append(words, cur.String())
		}
		cur.Reset()
		inWord = false
	}
	endCommand := func() {
		endWord()
		if c, ok := splitAssignments(words); ok {
			cmds = append(cmds, c)
		}
		words = nil
	}
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch {
		case c == '\\' && i+1 < len(src) && src[i+1] == '\n':
			i++
		case c == '\\' && i+1 < len(src):
			cur.WriteByte(src[i+1])
			inWord = true
			i++
		case c == '\'' || c == '"':
			end := strings.IndexByte(src[i+1:], c)
			if end < 0 {
				end = len(src) - i - 1
			}
			cur.WriteString(src[i+1 : i+1+end])
			inWord = true
			i += end + 1
		case c == '#' && !inWord:
			for i+1 < len(src) && src[i+1] != '\n' {
				i++
			}
		case c == '\n' || c == ';' || c == '|' || c == '&':
			endCommand()
		case c == ' ' || c == '\t':
			endWord()
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	endCommand()
	return cmds
}

// splitAssignments separates the leading NAME=value words of a command from the rest.
func splitAssignments(words []string) (command, bool) {
	if len(words) == 0 {
		return command{}, false
	}
	c := command{env: map[string]string{}}
	i := 0
	for ; i < len(words); i++ {
		name, value, ok := strings.Cut(words[i], "=")
		if !ok || name == "" || strings.ContainsAny(name, "-/.$") {
			break
		}
		c.env[name] = value
	}
	c.args = words[i:]
	return c, true
}

func TestParseShell(t *testing.T) {
	cases := []struct {
		name string
		src  string
		want []command
	}{
		{"assignment and command", "A=1 B='x y' bin/ilpfleet connector --log-level debug\n",
			[]command{{env: map[string]string{"A": "1", "B": "x y"}, args: []string{"bin/ilpfleet", "connector", "--log-level", "debug"}}}},
		{"quote across lines", "X='{\n  \"a\": 1\n}'\nY=2\n",
			[]command{{env: map[string]string{"X": "{\n  \"a\": 1\n}"}, args: []string{}}, {env: map[string]string{"Y": "2"}, args: []string{}}}},
		{"continuation and comment", "ilpfleet x --a 1 \\\n  --b 2     # or --c\n",
			[]command{{env: map[string]string{}, args: []string{"ilpfleet", "x", "--a", "1", "--b", "2"}}}},
		{"separators", "go build -o bin/ilpfleet . && bin/ilpfleet\n",
			[]command{{env: map[string]string{}, args: []string{"go", "build", "-o", "bin/ilpfleet", "."}}, {env: map[string]string{}, args: []string{"bin/ilpfleet"}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseShell(tc.src); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v\nwant %#v", got, tc.want)
			}
		})
	}
}
