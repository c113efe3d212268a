package manager

import (
	"flag"
	"testing"

	"go.uber.org/zap/zapcore"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// TestStacktracesOnlyWhenAskedFor: ERROR lines carry no stack trace unless a flag asks for
// them (--zap-stacktrace-level, or --zap-devel and its WARN default).
func TestStacktracesOnlyWhenAskedFor(t *testing.T) {
	for _, tc := range []struct {
		args        []string
		errorTraced bool
		untouched   bool // left to controller-runtime's defaults
	}{
		{nil, false, false},
		{[]string{"--zap-log-level=debug"}, false, false},
		{[]string{"--zap-stacktrace-level=error"}, true, false},
		{[]string{"--zap-devel"}, false, true},
		{[]string{"--zap-devel=false"}, false, false},
	} {
		fs := flag.NewFlagSet("manager", flag.ContinueOnError)
		var o zap.Options
		o.BindFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		withoutStacktraces(fs, &o)
		if tc.untouched {
			if o.StacktraceLevel != nil {
				t.Errorf("%v: stack trace level set to %v; want controller-runtime's default", tc.args, o.StacktraceLevel)
			}
			continue
		}
		if got := o.StacktraceLevel != nil && o.StacktraceLevel.Enabled(zapcore.ErrorLevel); got != tc.errorTraced {
			t.Errorf("%v: ERROR lines traced = %t; want %t", tc.args, got, tc.errorTraced)
		}
	}
}
