package main

import (
	"testing"
)

const h2loadOutput = `finished in 1.00s, 37031.00 req/s, 4.31MB/s
requests: 37031 total, 37039 started, 37031 done, 37029 succeeded, 2 failed, 2 errored, 0 timeout
status codes: 37000 2xx, 0 3xx, 29 4xx, 0 5xx
traffic: 4.31MB (4518030) total, 144.76KB (148238) headers (space savings 95.12%), 3.53MB (3703100) data
                     min         max         mean         sd        +/- sd
time for request:       29us     31.16ms       209us       323us    97.71%
time for connect:       54us        76us        65us        15us   100.00%
`

func TestParseH2load(t *testing.T) {
	r, err := parseH2load([]byte(h2loadOutput))
	if err != nil {
		t.Fatal(err)
	}
	if r.AchievedRate != 37031 || r.Responses != 37029 || r.Non2xx != 29 || r.ErrorCount != 2 {
		t.Errorf("rate %v responses %d non2xx %d errors %d", r.AchievedRate, r.Responses, r.Non2xx, r.ErrorCount)
	}
	if r.Latency.Max != 31160 || r.Latency.Mean != 209 {
		t.Errorf("latency max %d mean %d, want 31160 and 209", r.Latency.Max, r.Latency.Mean)
	}
	if _, err := parseH2load([]byte("connect failed")); err == nil {
		t.Error("garbage parsed without error")
	}
}
