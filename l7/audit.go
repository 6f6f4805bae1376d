package l7

// Audit mode (Config.Audit): a request the rules would deny is forwarded
// as if a rule allowed its host on its original port, and logged and
// counted as decision would-deny with the reason. Only the decision
// changes: the upstream is dialed by the same dialer (l7/internal/dialer), so the
// address policy (l7/internal/addrpolicy), the mark and TLS verification apply as in
// enforce mode, and the datapath (which ports reach the proxy, UDP) is not
// the proxy's to change. What such a request is forwarded as:
//
//   - HTTP/1.x on a plain connection: plain HTTP to the host on the
//     original port (the rule table is not consulted for a protocol, since
//     no rule names the host there);
//   - h2c and gRPC: h2c to the host on the original port;
//   - TLS: passed through by SNI to the host on the original port (a
//     ClientHello without SNI is still refused: there is no name to log);
//   - gateway CONNECT: a tunnel to host:port.
//
// Never through the egress proxy: no rule asked for it.

import (
	"github.com/egressd/egressd/l7/internal/client"
	"github.com/egressd/egressd/rules"
)

// reasonWouldDeny is the reason logged for a would-deny request.
const reasonWouldDeny = "no egress rule allows the host and port (audit mode: forwarded)"

// wouldDeny marks e as forwarded in audit mode and returns the match it is
// forwarded by: plain HTTP (or h2c, or passthrough, as the caller is) to
// host on port, with no rule. The stand-in rule's service is empty: a
// rule naming an IP literally exempts that IP from the address policy
// (l7/internal/addrpolicy), and an app's IP-literal Host must not (Host: 127.0.0.1,
// 169.254.169.254 or the node's address would reach them).
func (p *Proxy) wouldDeny(e *client.Entry, host string, port uint16) rules.Match {
	e.WouldDeny = true
	pt := rules.Port{Number: port, Protocol: rules.HTTP}
	return rules.Match{Rule: &rules.Rule{Ports: []rules.Port{pt}}, Port: pt}
}

// markWouldDeny turns an entry forwarded in audit mode into decision
// would-deny before it is logged; a refusal for another reason (an upstream
// error, a malformed exchange) keeps its decision and says it was audited.
func markWouldDeny(e *client.Entry) {
	e.Rule = ""
	if e.Decision != client.DecisionAllow {
		return
	}
	e.Decision = client.DecisionWouldDeny
	if e.Reason == "" {
		e.Reason = reasonWouldDeny
	} else {
		e.Reason = reasonWouldDeny + "; " + e.Reason
	}
}

// ModeName is "audit" or "enforce".
func ModeName(audit bool) string {
	if audit {
		return "audit"
	}
	return "enforce"
}
