package l7

import (
	"net/url"
	"testing"

	"github.com/egressd/egressd/rules"
)

// BenchmarkEgressProxyChain compares one keep-alive HTTP/1.1 client through
// the sidecar going direct, through the sidecar chained to an in-process
// egressd gateway, and chained to Squid (pooled connections to the egress
// proxy in both chains). Compare the ns/op ratios, not the absolute times.
func BenchmarkEgressProxyChain(b *testing.B) {
	up := benchUpstream(b)
	direct := httpRule("direct", "*.allowed.test", up.Port())
	via := viaRule("*.allowed.test", up.Port(), rules.HTTP)
	sidecar := func(b *testing.B, r *rules.Rule, egress *url.URL) *env {
		return newEnv(b, Config{Rules: compileRules(b, r), OriginalDst: fixedOrig{up}, EgressProxy: egress})
	}
	b.Run("direct", func(b *testing.B) {
		runKeepAlive(b, sidecar(b, direct, nil).addr, benchRequest)
	})
	b.Run("via-gateway", func(b *testing.B) {
		gw := newGateway(b, nil, via)
		runKeepAlive(b, sidecar(b, via, &url.URL{Scheme: "http", Host: gw.addr}).addr, benchRequest)
	})
	b.Run("via-squid", func(b *testing.B) {
		sq := startSquid(b, "api.allowed.test")
		runKeepAlive(b, sidecar(b, via, sq.url(squidPassword)).addr, benchRequest)
	})
}
