package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// A JSON error from encoding/json says what is wrong but not where, and a long value quoted
// from its start (quote cuts at 64 characters) never shows the bad spot of a 300-character
// CONNECTOR_ACCOUNTS. jsonProblem says where: line and column in multi-line text (a file, a
// variable set from a YAML block), the character in one-line text, and an excerpt around the
// spot with a marker.
//
// The excerpt shows the text's structure only: JSON whitespace, the punctuation { } [ ] , :
// and object keys, with every other run of text (string values, numbers, bare words,
// single-quoted text) as ***. The errors.go rule that a secret is not echoed holds for
// excerpts too, and no pattern can tell a secret in text that is not valid JSON (single
// quotes, escaped slashes or quotes, a '@' in a URL's password): so no value is shown.

// jsonMarker marks the bad spot in an excerpt; plain ASCII, so it survives any log viewer.
const jsonMarker = "<<here>>"

// valueMask stands for a run of text an excerpt does not show.
const valueMask = "***"

// An excerpt shows this many characters (a masked run counts as one) before the bad spot and
// after it: more before, where the mistake usually is (a parser notices a trailing comma at
// the next character).
const (
	excerptBefore = 40
	excerptAfter  = 16
)

// jsonProblem describes a JSON syntax error of text with its position and an excerpt; ok is
// false for errors that carry no position. Its callers decode into any, so that a syntax
// error is the only kind of error they get.
func jsonProblem(text string, err error) (problem string, ok bool) {
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		return "", false
	}
	if text == "" {
		return "the value is empty", true
	}
	pos := syntaxErrorPos(text, se)
	return fmt.Sprintf("syntax error at %s: %s; near: %s", position(text, pos), err, excerpt(text, pos)), true
}

// syntaxErrorPos is the byte offset of the bad spot: the offending character, or the end of
// the text for an unexpected end.
func syntaxErrorPos(text string, se *json.SyntaxError) int {
	off := se.Offset
	if off > 0 && !strings.HasPrefix(se.Error(), "unexpected end") {
		off-- // Offset counts the offending byte as read
	}
	return int(min(max(off, 0), int64(len(text))))
}

// position names pos as a person counts: line and column (1-based, in characters) when the
// text has several lines, else the character and the length.
func position(text string, pos int) string {
	before := text[:pos]
	if strings.Contains(text, "\n") {
		line := strings.Count(before, "\n") + 1
		col := utf8.RuneCountInString(before[strings.LastIndexByte(before, '\n')+1:]) + 1
		return fmt.Sprintf("line %d, column %d", line, col)
	}
	n := utf8.RuneCountInString(text)
	if pos == len(text) {
		return fmt.Sprintf("the end (after character %d)", n)
	}
	return fmt.Sprintf("character %d of %d", utf8.RuneCountInString(before)+1, n)
}

// excerpt is the structure of pos's line around pos (see jsonShape) with jsonMarker at pos,
// control characters escaped and "…" where it is cut. A line ends at "\n" or "\r\n".
func excerpt(text string, pos int) string {
	lineStart := strings.LastIndexByte(text[:pos], '\n') + 1
	lineEnd := len(text)
	if i := strings.IndexByte(text[pos:], '\n'); i >= 0 {
		lineEnd = pos + i
		if lineEnd > pos && text[lineEnd-1] == '\r' {
			lineEnd--
		}
	}
	var w excerptWriter
	jsonShape(text, func(start, end int, masked bool) bool {
		if end <= lineStart {
			return true
		}
		if start >= lineEnd {
			return false
		}
		start, end = max(start, lineStart), min(end, lineEnd)
		if masked {
			if pos == start {
				w.mark()
			}
			more := w.put(valueMask)
			if pos > start && pos < end { // inside the value: the marker splits it
				w.mark()
				more = w.put(valueMask)
			}
			return more
		}
		for i := start; i < end; {
			r, size := utf8.DecodeRuneInString(text[i:end])
			if pos >= i && pos < i+size {
				w.mark()
			}
			if !w.put(printable(r)) {
				return false
			}
			i += size
		}
		return true
	})
	if !w.marked { // pos is at the end of the line
		w.mark()
	}
	return w.String()
}

// excerptWriter keeps the pieces of an excerpt (a character, valueMask) around the marker:
// excerptBefore before it, excerptAfter after it.
type excerptWriter struct {
	before, after       []string
	marked              bool
	cutBefore, cutAfter bool
}

func (w *excerptWriter) mark() { w.marked = true }

// put adds a piece; it returns false once the excerpt is complete.
func (w *excerptWriter) put(p string) bool {
	switch {
	case !w.marked:
		if len(w.before) == excerptBefore {
			w.before = w.before[1:]
			w.cutBefore = true
		}
		w.before = append(w.before, p)
	case len(w.after) == excerptAfter:
		w.cutAfter = true
		return false
	default:
		w.after = append(w.after, p)
	}
	return true
}

func (w *excerptWriter) String() string {
	var b strings.Builder
	if w.cutBefore {
		b.WriteString("…")
	}
	b.WriteString(strings.Join(w.before, ""))
	b.WriteString(jsonMarker)
	b.WriteString(strings.Join(w.after, ""))
	if w.cutAfter {
		b.WriteString("…")
	}
	return b.String()
}

// printable is r as an excerpt shows it: escaped unless printable.
func printable(r rune) string {
	if unicode.IsPrint(r) && r != utf8.RuneError {
		return string(r)
	}
	q := strconv.QuoteRune(r)
	return q[1 : len(q)-1]
}

// jsonShape splits text, which need not be valid JSON, into runs that are shown (JSON
// whitespace, the punctuation { } [ ] , : and object keys) and runs that are masked (every
// other run of text), and calls yield with each run in order until it returns false. Runs
// never span a line break.
//
// A key is a double-quoted string followed by optional whitespace and ':', except where a
// value is expected (after ':' or '['): in `"secret":"hunter2":` the second string is a
// value. A string runs to its closing quote, honouring backslash escapes, or to the end of
// its line; single-quoted text likewise; any other run stops at whitespace, punctuation or a
// quote.
func jsonShape(text string, yield func(start, end int, masked bool) bool) {
	var prev byte // the last punctuation, or 'v' after a value or key
	for i := 0; i < len(text); {
		c := text[i]
		start := i
		masked := true
		switch {
		case isJSONSpace(c) || strings.IndexByte("{}[],:", c) >= 0:
			for i < len(text) && (isJSONSpace(text[i]) || strings.IndexByte("{}[],:", text[i]) >= 0) && text[i] != '\n' {
				if !isJSONSpace(text[i]) {
					prev = text[i]
				}
				i++
			}
			if i == start { // a line break, alone
				i++
			}
			masked = false
		case c == '"' || c == '\'':
			closed := false
			for i++; i < len(text) && text[i] != '\n'; i++ {
				if text[i] == '\\' && c == '"' && i+1 < len(text) && text[i+1] != '\n' {
					i++
					continue
				}
				if text[i] == c {
					i++
					closed = true
					break
				}
			}
			masked = !(c == '"' && closed && prev != ':' && prev != '[' && colonFollows(text[i:]))
			prev = 'v'
		default:
			for i < len(text) && !isJSONSpace(text[i]) && strings.IndexByte("{}[],:\"'", text[i]) < 0 {
				i++
			}
			prev = 'v'
		}
		if !yield(start, i, masked) {
			return
		}
	}
}

func isJSONSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

// colonFollows reports whether s starts with optional JSON whitespace and ':'.
func colonFollows(s string) bool {
	s = strings.TrimLeft(s, " \t\r\n")
	return s != "" && s[0] == ':'
}

// jsonKind names the kind of a JSON value for an error about a value of the wrong kind, which
// does not quote it: a string where an object belongs may be a URL with a password.
func jsonKind(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0:
		return "nothing"
	case !utf8.Valid(raw):
		return "text that is not valid UTF-8"
	case !json.Valid(raw):
		return "text that is not valid JSON"
	}
	switch raw[0] {
	case '"':
		return "a string"
	case '[':
		return "an array"
	case '{':
		return "an object"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// loneSurrogate returns the byte offset of the first \u escape in a string of the JSON text
// (keys too) that is half of a UTF-16 surrogate pair without its other half, and whether there
// is one. encoding/json decodes such an escape as U+FFFD without an error, silently changing
// an account id or a secret (JSON.parse keeps the lone half). text must be valid JSON, so that
// quotes and backslashes are read right.
func loneSurrogate(text string) (int, bool) {
	inString := false
	for i := 0; i < len(text); i++ {
		switch c := text[i]; {
		case c == '"':
			inString = !inString
		case c == '\\' && inString:
			v, ok := uEscape(text, i)
			if !ok {
				i++ // a one-character escape: skip the escaped character
				continue
			}
			switch {
			case v >= 0xDC00 && v <= 0xDFFF: // a low half with no high half before it
				return i, true
			case v >= 0xD800 && v <= 0xDBFF:
				if low, ok := uEscape(text, i+6); !ok || low < 0xDC00 || low > 0xDFFF {
					return i, true
				}
				i += 6 // the low half, checked
			}
			i += 5
		}
	}
	return 0, false
}

// uEscape reads the \uXXXX escape at text[i:], if there is one.
func uEscape(text string, i int) (rune, bool) {
	if i+6 > len(text) || text[i] != '\\' || text[i+1] != 'u' {
		return 0, false
	}
	v, err := strconv.ParseUint(text[i+2:i+6], 16, 16)
	return rune(v), err == nil
}

// surrogateProblem describes the first lone surrogate escape of the JSON text (loneSurrogate)
// with its position and an excerpt that shows no value; ok is false when there is none.
func surrogateProblem(text string) (problem string, ok bool) {
	pos, ok := loneSurrogate(text)
	if !ok {
		return "", false
	}
	return fmt.Sprintf("the \\u escape at %s is half of a UTF-16 surrogate pair, without its other half: "+
		"it stands for no character, and decoding it would replace it with U+FFFD, changing the value; "+
		"write the character itself or both halves of its pair; near: %s", position(text, pos), excerpt(text, pos)), true
}

// maxShapePieces bounds the shape of a value an error shows (a masked run counts as one).
const maxShapePieces = 40

// kindAndShape names the kind of a JSON object or array and shows its structure only (see
// jsonShape): keys and punctuation, every other value as ***. An error about a value of the
// wrong kind uses it instead of the value, which may hold a secret ({"token": …} written where
// a string belongs).
func kindAndShape(raw json.RawMessage) string {
	kind := jsonKind(raw)
	var compact bytes.Buffer
	if json.Compact(&compact, raw) != nil {
		return kind
	}
	text := compact.String()
	var b strings.Builder
	pieces := 0
	put := func(piece string) bool {
		if pieces == maxShapePieces {
			b.WriteString("…")
			return false
		}
		b.WriteString(piece)
		pieces++
		return true
	}
	jsonShape(text, func(start, end int, masked bool) bool {
		if masked {
			return put(valueMask)
		}
		for _, r := range text[start:end] {
			if !put(printable(r)) {
				return false
			}
		}
		return true
	})
	return kind + " " + b.String()
}

// isJSONScalar reports whether raw is a JSON string, number, boolean or null: a value an error
// may show as written.
func isJSONScalar(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] != '{' && raw[0] != '[' && json.Valid(raw)
}
