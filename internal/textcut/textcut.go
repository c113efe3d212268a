// Package textcut shortens text for messages that have a size bound (status conditions,
// events) without cutting a UTF-8 character in two: the API server would keep the broken
// bytes, and JSON readers show them as U+FFFD.
package textcut

import "unicode/utf8"

// Prefix is the longest prefix of s of at most n bytes that ends between two characters.
func Prefix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Ellipsis ends a text that Cut shortened.
const Ellipsis = "…"

// Cut is s if it has at most n bytes, else its longest prefix that ends between two
// characters and, with Ellipsis after it, has at most n bytes.
func Cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return Prefix(s, max(n-len(Ellipsis), 0)) + Ellipsis
}
