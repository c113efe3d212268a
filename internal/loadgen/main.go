package loadgen

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// Summary is the one-line description of the `ilpfleet loadgen` command.
const Summary = "send ILP packets through a connector over BTP and measure packets/s, rejects and latency"

// Main parses the flags of `ilpfleet loadgen`, runs, and prints the result to stdout (text or,
// with -json, one JSON object). It returns an error when the run could not happen or when
// not every packet was fulfilled, after printing what was measured, so that scripts can rely
// on the exit status; flag.ErrHelp after -h printed the flags (ilpfleet's main exits 0 then).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, asJSON, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	res, runErr := Run(ctx, cfg)
	if res == nil {
		return runErr
	}
	if err := write(stdout, res, asJSON); err != nil {
		return err
	}
	if runErr != nil {
		return runErr
	}
	if !res.AllFulfilled() {
		return fmt.Errorf("%d of %d packets fulfilled (%d rejected, %d other failures)",
			res.Fulfilled, res.Packets, res.RejectedTotal(), res.ErrorTotal())
	}
	return nil
}

func write(w io.Writer, res *Result, asJSON bool) error {
	if !asJSON {
		return res.WriteText(w)
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func parseFlags(args []string, stderr io.Writer) (Config, bool, error) {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: ilpfleet loadgen -sender URL -receiver URL -destination ADDRESS [flags]\n\n%s.\n"+
			"Both URLs are BTP accounts of the connector under test (ilp-plugin-btp listeners), e.g.\n"+
			"btp+ws://loadgen:secret@127.0.0.1:7001. The exit status is 0 only when every packet was fulfilled.\n\nFlags:\n", Summary)
		fs.PrintDefaults()
	}
	var cfg Config
	var dest, amount string
	var asJSON bool
	fs.StringVar(&cfg.Sender, "sender", "", "BTP URL of the sender account (btp+ws://user:token@host:port)")
	fs.StringVar(&cfg.Receiver, "receiver", "", "BTP URL of the receiver account")
	fs.StringVar(&dest, "destination", "", "ILP address to send to: the receiver account's address at the connector, or below it")
	fs.IntVar(&cfg.Packets, "n", 10000, "number of measured packets")
	fs.IntVar(&cfg.Concurrency, "c", 10, "packets in flight at once")
	fs.StringVar(&amount, "amount", "1", "amount of each packet, an integer in the sender account's units")
	fs.IntVar(&cfg.Warmup, "warmup", 1000, "packets sent before measuring (not counted)")
	fs.DurationVar(&cfg.Timeout, "timeout", 5*time.Minute, "bound on the whole run (connect, warmup, measure)")
	fs.DurationVar(&cfg.Expiry, "expiry", 30*time.Second, "expiry of each Prepare, from when it is sent")
	fs.BoolVar(&asJSON, "json", false, "print the result as one JSON object")
	if err := fs.Parse(args); err != nil {
		return cfg, false, err
	}
	if fs.NArg() > 0 {
		return cfg, false, fmt.Errorf("unexpected arguments %q (every setting is a flag; see -h)", fs.Args())
	}
	a, err := parseAmount(amount)
	if err != nil {
		return cfg, false, err
	}
	cfg.Amount = a
	cfg.Destination = ilp.Address(dest)
	return cfg, asJSON, cfg.Validate()
}

// parseAmount reads a decimal integer amount; amounts are never floats.
func parseAmount(s string) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("amount %q: want an integer from 0 to 18446744073709551615", s)
	}
	return v, nil
}
