package admin

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
)

// statsPrefix selects the families GET /stats shows: JS keeps its ILP metrics in a registry
// of their own and /stats prints only that one, never the process metrics.
const statsPrefix = "ilp_connector_"

// jsLabelOrder is the key order of JS stats labels: the middleware's own labels, then
// the account labels that stats.ts appends.
var jsLabelOrder = []string{"result", "code", "account", "asset", "scale"}

// renderStats writes the families as prom-client's Registry.getMetricsAsJSON() (v11):
// [{help, name, type, values: [{value, labels}], aggregator}]. Histograms and summaries
// follow prom-client's flattening (one value per bucket/quantile, plus _sum and _count).
// Unlike prom-client, a labelled family with no series yet is absent: the Go registry
// does not gather empty vectors.
func renderStats(families []*dto.MetricFamily) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	n := 0
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), statsPrefix) {
			continue
		}
		if n > 0 {
			b.WriteByte(',')
		}
		n++
		writeFamily(&b, f)
	}
	b.WriteByte(']')
	return b.Bytes()
}

func writeFamily(b *bytes.Buffer, f *dto.MetricFamily) {
	name := f.GetName()
	b.WriteString(`{"help":`)
	writeString(b, f.GetHelp())
	b.WriteString(`,"name":`)
	writeString(b, name)
	b.WriteString(`,"type":`)
	writeString(b, jsType(f.GetType()))
	b.WriteString(`,"values":[`)
	first := true
	value := func(labels []*dto.LabelPair, extra [2]string, v float64, metricName string) {
		if !first {
			b.WriteByte(',')
		}
		first = false
		writeValue(b, labels, extra, v, metricName)
	}
	for _, m := range f.GetMetric() {
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			value(m.GetLabel(), [2]string{}, m.GetCounter().GetValue(), "")
		case dto.MetricType_GAUGE:
			value(m.GetLabel(), [2]string{}, m.GetGauge().GetValue(), "")
		case dto.MetricType_UNTYPED:
			value(m.GetLabel(), [2]string{}, m.GetUntyped().GetValue(), "")
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			h := m.GetHistogram()
			for _, bk := range h.GetBucket() {
				value(m.GetLabel(), [2]string{"le", formatNumber(bk.GetUpperBound())}, float64(bk.GetCumulativeCount()), name+"_bucket")
			}
			value(m.GetLabel(), [2]string{"le", `"+Inf"`}, float64(h.GetSampleCount()), name+"_bucket")
			value(m.GetLabel(), [2]string{}, h.GetSampleSum(), name+"_sum")
			value(m.GetLabel(), [2]string{}, float64(h.GetSampleCount()), name+"_count")
		case dto.MetricType_SUMMARY:
			s := m.GetSummary()
			for _, q := range s.GetQuantile() {
				value(m.GetLabel(), [2]string{"quantile", formatNumber(q.GetQuantile())}, q.GetValue(), "")
			}
			value(m.GetLabel(), [2]string{}, s.GetSampleSum(), name+"_sum")
			value(m.GetLabel(), [2]string{}, float64(s.GetSampleCount()), name+"_count")
		}
	}
	b.WriteString(`],"aggregator":"sum"}`)
}

func jsType(t dto.MetricType) string {
	switch t {
	case dto.MetricType_COUNTER:
		return "counter"
	case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
		return "histogram"
	case dto.MetricType_SUMMARY:
		return "summary"
	default:
		return "gauge"
	}
}

// writeValue writes one value entry. Counters and gauges are {value, labels}, as
// prom-client stores them; histogram and summary entries are {labels, value, metricName},
// as prom-client builds them. extra is a bucket's le or a quantile, already JSON.
func writeValue(b *bytes.Buffer, labels []*dto.LabelPair, extra [2]string, v float64, metricName string) {
	b.WriteByte('{')
	if metricName == "" && extra[0] == "" {
		b.WriteString(`"value":`)
		b.WriteString(formatNumber(v))
		b.WriteString(`,"labels":`)
		writeLabels(b, labels, extra)
	} else {
		b.WriteString(`"labels":`)
		writeLabels(b, labels, extra)
		b.WriteString(`,"value":`)
		b.WriteString(formatNumber(v))
	}
	if metricName != "" {
		b.WriteString(`,"metricName":`)
		writeString(b, metricName)
	}
	b.WriteByte('}')
}

func writeLabels(b *bytes.Buffer, labels []*dto.LabelPair, extra [2]string) {
	b.WriteByte('{')
	for i, l := range orderLabels(labels) {
		if i > 0 {
			b.WriteByte(',')
		}
		writeString(b, l.GetName())
		b.WriteByte(':')
		writeLabelValue(b, l.GetName(), l.GetValue())
	}
	if extra[0] != "" {
		if len(labels) > 0 {
			b.WriteByte(',')
		}
		writeString(b, extra[0])
		b.WriteByte(':')
		b.WriteString(extra[1])
	}
	b.WriteByte('}')
}

// orderLabels puts the JS labels in JS order, then any other label by name.
func orderLabels(labels []*dto.LabelPair) []*dto.LabelPair {
	out := slices.Clone(labels)
	rank := func(name string) int {
		if i := slices.Index(jsLabelOrder, name); i >= 0 {
			return i
		}
		return len(jsLabelOrder)
	}
	slices.SortStableFunc(out, func(a, c *dto.LabelPair) int {
		if d := rank(a.GetName()) - rank(c.GetName()); d != 0 {
			return d
		}
		return strings.Compare(a.GetName(), c.GetName())
	})
	return out
}

// writeLabelValue writes the scale label as a number, since JS labels it with the account's
// numeric assetScale; every other label is a string.
func writeLabelValue(b *bytes.Buffer, name, v string) {
	if name == "scale" {
		if n, err := strconv.ParseUint(v, 10, 8); err == nil {
			b.WriteString(strconv.FormatUint(n, 10))
			return
		}
	}
	writeString(b, v)
}

// formatNumber prints v as JSON.stringify prints a JS number (null for NaN and ±Inf).
func formatNumber(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "null"
	}
	out, _ := json.Marshal(v) // encoding/json formats floats as ES6 Number.toString does
	return string(out)
}

func writeString(b *bytes.Buffer, s string) {
	out, _ := marshalJS(s)
	b.Write(out)
}
