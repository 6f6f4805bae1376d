package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/egressd/egressd/cmd/egressbench/internal/scenario"
)

// options are the flags of "egressbench run".
type options struct {
	egressd  string        // egressd binary
	egressdB string        // a second egressd binary, case egressd-b ("" none)
	peerDir  string        // nginx.conf / haproxy.cfg templates
	cases    []string      // case names to run
	tests    []string      // test names to run
	reps     int           // repetitions (medians are reported)
	duration time.Duration // per load run
	idleWait time.Duration // longest wait for the machine to calm down before a run
	bigRules int           // rule count of the egressd-100k case
	bulkSize int64         // body size of the bulk tests
	jsonFile string
	mdFile   string
	svgDir   string
	keep     bool     // keep the run directory
	strict   bool     // fail unless every case ran every test and got answers
	env      []string // extra KEY=VALUE environment of egressd processes
}

// envFlag collects repeated KEY=VALUE flags.
type envFlag struct{ list *[]string }

func (f envFlag) String() string { return "" }
func (f envFlag) Set(v string) error {
	if !strings.Contains(v, "=") {
		return fmt.Errorf("want KEY=VALUE, got %q", v)
	}
	*f.list = append(*f.list, v)
	return nil
}

// allCases lists every case; each one is a built binary measured from
// outside (egressd's proxy alone, without BPF, and its profiles are l7's
// own benchmarks: BENCHMARKS.md "Profile of egressd under load"). "egressd-b" is the
// egressd case run with the --egressd-b binary (a before/after comparison in
// one interleaved run); it joins the default set when that flag is given.
var allCases = []string{"direct", "nginx", "haproxy", "egressd", "egressd-b", "egressd-https", "egressd-100k"}

var defaultCases = "direct,nginx,haproxy,egressd,egressd-https,egressd-100k"

const allTests = "lat1000,lat2000,rtt,max-ka,max-close,h2c,grpc,grpc1000,conns1000,bulk-down,bulk-up,bulk-down-chunked,bulk-up-chunked"

func parseRunFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	self, _ := os.Executable()
	fs.StringVar(&o.egressd, "egressd", filepath.Join(filepath.Dir(self), "egressd"), "egressd `binary`")
	fs.StringVar(&o.peerDir, "peers", "bench", "`directory` holding nginx.conf and haproxy.cfg templates")
	fs.StringVar(&o.egressdB, "egressd-b", "", "a second egressd `binary` (e.g. an older commit's), run as case egressd-b with the tests of case egressd in the same interleaved run")
	cases := fs.String("cases", defaultCases, "comma-separated `cases` (of "+strings.Join(allCases, ",")+")")
	tests := fs.String("tests", allTests, "comma-separated `tests`: latRATE (open loop, keep-alive), rtt (1 connection back to back), "+
		"max-ka and max-close (32 connections back to back, keep-alive / new connection per request), h2c (h2load), grpc (unary calls, 8 connections × 10 streams), grpcRATE (unary calls, open loop at RATE/s on 8 connections), "+
		"conns1000 (RSS with 1,000 open connections), bulk-down, bulk-up and their -chunked forms (one --bulk-size body with curl)")
	fs.IntVar(&o.reps, "reps", 3, "repetitions; tests and cases are interleaved and rotated, medians reported")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "length of each load run")
	fs.DurationVar(&o.idleWait, "idle-wait", time.Second, "longest wait for the machine to drop under 15% busy before each run (a shared machine may never)")
	fs.IntVar(&o.bigRules, "big-rules", 100000, "number of rules of the egressd-100k case")
	fs.Int64Var(&o.bulkSize, "bulk-size", 1<<30, "body `bytes` of the bulk tests")
	fs.StringVar(&o.jsonFile, "json", "", "write every run and the medians as JSON to `file`")
	fs.StringVar(&o.mdFile, "markdown", "", "write BENCHMARKS.md-ready tables to `file`")
	fs.StringVar(&o.svgDir, "svg", "", "write a latency percentile plot per open-loop test into `dir`")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary run directory (configs, logs)")
	fs.Var(envFlag{&o.env}, "egressd-env", "extra `KEY=VALUE` in the environment of egressd, e.g. GOMAXPROCS=1; repeatable")
	fs.BoolVar(&o.strict, "strict", false, "exit 1 unless every case started and every run got 2xx answers (CI smoke; no timing checks)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	o.cases = splitList(*cases)
	if o.egressdB != "" && *cases == defaultCases {
		o.cases = append(o.cases, "egressd-b")
	}
	if contains(o.cases, "egressd-b") && o.egressdB == "" {
		return nil, fmt.Errorf("case egressd-b needs --egressd-b BINARY: %w", errUsage)
	}
	o.tests = splitList(*tests)
	for _, c := range o.cases {
		if !contains(allCases, c) {
			return nil, fmt.Errorf("unknown case %q (have %s): %w", c, strings.Join(allCases, ","), errUsage)
		}
	}
	for _, t := range o.tests {
		if _, err := scenario.Parse(t); err != nil {
			return nil, fmt.Errorf("%v: %w", err, errUsage)
		}
	}
	if o.reps < 1 || o.duration <= 0 || o.bulkSize <= 0 {
		return nil, fmt.Errorf("reps, duration and bulk-size must be positive: %w", errUsage)
	}
	return o, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// runCmd is "egressbench run": set up, run the interleaved matrix, report.
func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseRunFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("run needs root (network namespace, cgroup, BPF)")
	}
	env, err := setup(ctx, o, stderr)
	if env != nil {
		defer env.Close()
	}
	if err != nil {
		return err
	}
	rep, err := env.runMatrix(ctx)
	if err != nil {
		return err
	}
	rep.Summarize()
	rep.WriteTable(stdout)
	if err := rep.WriteFiles(o.jsonFile, o.svgDir, o.mdFile); err != nil {
		return err
	}
	if o.strict {
		return rep.Complete()
	}
	return nil
}
