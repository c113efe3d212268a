package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// receiverReady is the first line of js/stream-receiver.js.
type receiverReady struct {
	Address            string `json:"address"`
	AssetCode          string `json:"assetCode"`
	AssetScale         int    `json:"assetScale"`
	DestinationAccount string `json:"destinationAccount"`
	SharedSecret       string `json:"sharedSecret"`
}

// receiver is a running js/stream-receiver.js.
type receiver struct {
	proc  *proc
	ready receiverReady
	lines <-chan string
}

// received is what a receiver reported.
type received struct {
	packets     []uint64 // amounts of the fulfilled Prepares
	total       uint64   // sum of the STREAM money events
	streamTotal uint64   // the stream's own total, at its last money event
	moneyEvents int      // number of money events
}

// startReceiver starts the STREAM receiver as a BTP child at server and waits for its
// address and shared secret.
func startReceiver(t *testing.T, server string) *receiver {
	t.Helper()
	lines := make(chan string, 1024)
	p := startProc(t, "stream-receiver", childEnv(map[string]string{"NODE_PATH": env.nodeModules}), lines,
		"node", filepath.Join(env.jsDir, "stream-receiver.js"), "--server", server,
		"--connect-timeout-ms", "10000", "--max-lifetime-ms", "120000", "--watch-stdin", "true")
	r := &receiver{proc: p, lines: lines}
	timeout := time.After(20 * time.Second)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				<-p.done
				t.Fatalf("stream-receiver exited (%v) before it was ready", p.err)
			}
			var ev struct {
				Event string `json:"event"`
				receiverReady
			}
			if json.Unmarshal([]byte(line), &ev) == nil && ev.Event == "ready" {
				r.ready = ev.receiverReady
				return r
			}
		case <-timeout:
			t.Fatal("stream-receiver: not ready after 20 s")
		}
	}
}

// waitTotal reads the receiver's reports until its money events add up to want, or timeout.
func (r *receiver) waitTotal(t *testing.T, want uint64, timeout time.Duration) received {
	t.Helper()
	var got received
	deadline := time.After(timeout)
	for got.total != want || got.streamTotal != want {
		select {
		case line, ok := <-r.lines:
			if !ok {
				t.Errorf("stream-receiver exited having received %+v, want a total of %d", got, want)
				return got
			}
			var ev struct{ Event, Amount, StreamTotal string }
			if json.Unmarshal([]byte(line), &ev) != nil {
				continue
			}
			n, _ := strconv.ParseUint(ev.Amount, 10, 64)
			switch ev.Event {
			case "packet":
				got.packets = append(got.packets, n)
			case "money":
				got.total += n
				got.moneyEvents++
				got.streamTotal, _ = strconv.ParseUint(ev.StreamTotal, 10, 64)
			}
		case <-deadline:
			t.Errorf("stream-receiver received %+v after %v, want a total of %d", got, timeout, want)
			return got
		}
	}
	// Each fulfilled Prepare prints its money line, then its packet line: read the packet
	// lines of the last money events.
	for len(got.packets) < got.moneyEvents {
		select {
		case line := <-r.lines:
			var ev struct{ Event, Amount string }
			if json.Unmarshal([]byte(line), &ev) == nil && ev.Event == "packet" {
				n, _ := strconv.ParseUint(ev.Amount, 10, 64)
				got.packets = append(got.packets, n)
			}
		case <-time.After(2 * time.Second):
			return got
		}
	}
	return got
}

// sent is the result of js/stream-sender.js.
type sent struct {
	ildcp struct {
		Address    string `json:"address"`
		AssetCode  string `json:"assetCode"`
		AssetScale int    `json:"assetScale"`
	}
	TotalSent      string         `json:"totalSent"`
	TotalDelivered string         `json:"totalDelivered"`
	Packets        []string       `json:"packets"`
	Rejects        map[string]int `json:"rejects"`
	amounts        []uint64
}

// runSender pays amount from a new BTP client at server to the receiver, and fails the test
// with the sender's output if it does not succeed within 60 s.
func runSender(t *testing.T, server, destination, secret string, amount uint64) *sent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(env.jsDir, "stream-sender.js"),
		"--server", server, "--destination", destination, "--secret", secret,
		"--amount", strconv.FormatUint(amount, 10), "--timeout-ms", "30000", "--connect-timeout-ms", "10000")
	cmd.Env = childEnv(map[string]string{"NODE_PATH": env.nodeModules})
	cmd.SysProcAttr = sysProcAttr()
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	report := func() string { return "stdout:\n" + stdout.String() + "stderr:\n" + stderr.String() }
	if err != nil {
		t.Fatalf("stream-sender: %v\n%s", err, report())
	}
	s := &sent{}
	gotSent := false
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var ev struct{ Event string }
		if json.Unmarshal([]byte(line), &ev) != nil {
			continue
		}
		switch ev.Event {
		case "ildcp":
			_ = json.Unmarshal([]byte(line), &s.ildcp)
		case "sent":
			gotSent = json.Unmarshal([]byte(line), s) == nil
		}
	}
	if !gotSent {
		t.Fatalf("stream-sender exited 0 without a result\n%s", report())
	}
	for _, p := range s.Packets {
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			t.Fatalf("stream-sender: packet amount %q: %v", p, err)
		}
		s.amounts = append(s.amounts, n)
	}
	t.Logf("stream-sender: %s", strings.TrimSpace(stdout.String()))
	return s
}
