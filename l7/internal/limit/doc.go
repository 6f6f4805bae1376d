// Package limit is l7's admission control: it counts the client
// connections open at once, in all and per client, and the h2c streams open
// at once per client, and tells whether the process's memory is above the
// level where new connections and streams are shed. l7 asks it at accept
// (Admit), once the client's cgroup is known (AdmitClient) and for each h2c
// stream (AdmitStream); it says why something must be shed, never sheds
// itself: closing, counting and answering stay with the proxy.
//
// The limits, in the order checked:
//
//   - maxConns: client connections open at once, all clients together;
//   - perClient: connections open at once from one client: the source
//     address for pods; for host processes, which all connect from
//     loopback, the cgroup of the process that connected when l7's
//     OriginalDst knows it, else the loopback address they share;
//   - memory: while the process's resident memory is above
//     memoryShedFraction of the runtime's limit (debug.SetMemoryLimit,
//     GOMEMLIMIT), a new connection is shed unless its client has fewer
//     than PressureAllowance open: the clients holding many connections
//     (the likely cause) are refused, the others still served, and the
//     connections already open can finish before the kernel's OOM killer
//     would end them all. Resident memory, not the runtime's own count:
//     x/net maps buffers it barely touches (512 KiB per upstream h2 stream
//     with a body), which the OOM killer does not see.
//   - perClientStreams: h2c streams open at once from one client, over all
//     its connections (under memory pressure: fewer than
//     PressureStreamAllowance).
//
// Why a package of its own: it is a set of counters and a memory reading
// with no knowledge of connections or protocols; kept apart from the accept
// path, its arithmetic reads (and is tested) on its own, and the proxy's
// files keep to serving.
//
// Files: limit.go (Key, Limiter: the connection and stream counts),
// memory.go (the memory threshold: the runtime's limit, resident memory),
// report.go (the rate-limited shed log line and the egressd_limit
// collector).
package limit
