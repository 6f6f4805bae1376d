package l7

import (
	"bufio"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// BenchmarkProfile is the load to profile egressd's proxy under, in one
// process with the client and the upstream (BENCHMARKS.md, "Profile of
// egressd under load"): what `egressbench l7 --cpuprofile` ran until issue
// 19 moved it here, so that the harness measures only built binaries from
// outside. As `egressd run` is set up: the access log in JSON, encoded by
// l7's own encoder and written to a file in batches. The subbenchmarks are
// egressbench's max-ka (32 keep-alive client connections at once, pooled
// upstream connections) and max-close (32 at once, a new client connection
// per request). The client and the upstream run in the same process, so
// they are in the profile too; pprof's -focus=egressd/l7 keeps the
// proxy's share. Profile it with
//
//	go test ./l7 -run '^$' -bench 'Profile/max-ka' -benchtime 3s \
//		-cpuprofile cpu.pprof -memprofile allocs.pprof -memprofilerate 65536
//	go tool pprof -top -nodecount=25 -focus=egressd/l7 l7.test cpu.pprof
func BenchmarkProfile(b *testing.B) {
	for _, tc := range []struct {
		name    string
		newConn bool
	}{{"max-ka", false}, {"max-close", true}} {
		b.Run(tc.name, func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "access.log"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			al := NewAccessLog(f, AccessLogOptions{JSON: true})
			defer al.Close() // before f.Close
			e := benchProxy(b, benchUpstream(b), slog.New(al))
			req := []byte(benchRequest)
			if tc.newConn {
				req = []byte(strings.Replace(benchRequest, "\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1))
			}
			b.ReportAllocs()
			b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0))) // 32 clients, as egressbench's load
			cpu0 := processCPU()
			defer reportCPU(b, cpu0)
			b.RunParallel(func(pb *testing.PB) {
				var c net.Conn
				br := bufio.NewReader(nil)
				defer func() {
					if c != nil {
						c.Close()
					}
				}()
				for pb.Next() {
					if c == nil {
						var derr error
						if c, derr = net.Dial("tcp", e.addr); derr != nil {
							b.Error(derr)
							return
						}
						br.Reset(c)
					}
					roundTrip(b, c, br, req)
					if tc.newConn {
						c.Close()
						c = nil
					}
				}
			})
		})
	}
}
