package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
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

// jsonMarker marks the bad spot in an excerpt; plain ASCII, so it survives any log viewer.
const jsonMarker = "<<here>>"

// An excerpt shows this many characters before the bad spot and after it: more before, where
// the mistake usually is (a parser notices a trailing comma at the next character), and in
// all less than the 64 characters quote shows of a value.
const (
	excerptBefore = 40
	excerptAfter  = 16
)

// secretRe finds the string values of keys that hold credentials (listener.secret, btpToken,
// staticToken, password, …) and the password of a URL's user info (btp+ws://:secret@host,
// redis://user:pass@host). Excerpts show them as ***: the errors.go rule that a secret is not
// echoed holds for excerpts too. An unterminated string is masked to the end of the text.
var secretRe = regexp.MustCompile(`(?i)"[a-z0-9_]*(?:secret|token|pass|auth|key|credential)[a-z0-9_]*"\s*:\s*"((?:[^"\\]|\\.)*)` +
	`|[a-z][a-z0-9+.-]*://[^/@\s"]*:([^/@\s"]*)@`)

// jsonProblem describes a JSON error of text with its position and an excerpt; ok is false
// for errors that carry no position.
func jsonProblem(text string, err error) (problem string, ok bool) {
	pos, ok := jsonErrorPos(text, err)
	if !ok {
		return "", false
	}
	if text == "" {
		return "the value is empty", true
	}
	return fmt.Sprintf("%s at %s: %s; near: %s", jsonErrorKind(err), position(text, pos), err, excerpt(text, pos)), true
}

// jsonErrorPos is the byte offset of the bad spot: the offending character of a syntax error,
// the end of the text for an unexpected end, and the end of the value of a type error.
func jsonErrorPos(text string, err error) (int, bool) {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	var off int64
	switch {
	case errors.As(err, &se):
		off = se.Offset
		if off > 0 && !strings.HasPrefix(se.Error(), "unexpected end") {
			off-- // Offset counts the offending byte as read
		}
	case errors.As(err, &te):
		off = te.Offset
	default:
		return 0, false
	}
	return int(min(max(off, 0), int64(len(text)))), true
}

func jsonErrorKind(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "wrong type"
	}
	return "syntax error"
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

// excerpt is the text around pos, within its line, with jsonMarker at pos, secrets masked,
// control characters escaped and "…" where it is cut.
func excerpt(text string, pos int) string {
	lineStart := strings.LastIndexByte(text[:pos], '\n') + 1
	lineEnd := len(text)
	if i := strings.IndexByte(text[pos:], '\n'); i >= 0 {
		lineEnd = pos + i
	}
	lo, hi := pos, pos
	for n := 0; n < excerptBefore && lo > lineStart; n++ {
		_, size := utf8.DecodeLastRuneInString(text[lineStart:lo])
		lo -= size
	}
	for n := 0; n < excerptAfter && hi < lineEnd; n++ {
		_, size := utf8.DecodeRuneInString(text[hi:lineEnd])
		hi += size
	}
	var b strings.Builder
	if lo > lineStart {
		b.WriteString("…")
	}
	writeMasked(&b, text, lo, hi, pos, secretSpans(text))
	if hi < lineEnd {
		b.WriteString("…")
	}
	return b.String()
}

// writeMasked writes text[lo:hi] with the marker at pos and each masked span as one ***.
func writeMasked(b *strings.Builder, text string, lo, hi, pos int, masks [][2]int) {
	masked := func(i int) bool {
		for _, m := range masks {
			if i >= m[0] && i < m[1] {
				return true
			}
		}
		return false
	}
	inMask := false
	for i := lo; i < hi; {
		if i == pos {
			b.WriteString(jsonMarker)
			inMask = false // a mask resumes after the marker with its own ***
		}
		r, size := utf8.DecodeRuneInString(text[i:])
		switch {
		case masked(i):
			if !inMask {
				b.WriteString("***")
			}
			inMask = true
		case unicode.IsPrint(r) && r != utf8.RuneError:
			b.WriteRune(r)
			inMask = false
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			inMask = false
		}
		i += size
	}
	if pos == hi {
		b.WriteString(jsonMarker)
	}
}

// secretSpans are the byte ranges of text that secretRe masks.
func secretSpans(text string) [][2]int {
	var out [][2]int
	for _, m := range secretRe.FindAllStringSubmatchIndex(text, -1) {
		for g := 1; g < len(m)/2; g++ {
			if m[2*g] >= 0 && m[2*g+1] > m[2*g] {
				out = append(out, [2]int{m[2*g], m[2*g+1]})
			}
		}
	}
	return out
}
