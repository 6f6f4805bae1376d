package explain

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/egressd/egressd/internal/accesslog"
	"github.com/egressd/egressd/rules"
)

// Log explains every request line of an access log against set;
// a malformed line is said so, and the next one read.
func Log(src string, r io.Reader, set *rules.Set, stdout io.Writer) error {
	lr := accesslog.NewReader(r)
	n := 0
	for {
		e, err := lr.Next()
		var le *accesslog.LineError
		switch {
		case err == io.EOF:
			if n == 0 {
				fmt.Fprintf(stdout, "%s: no access-log request line (%d other log records)\n", src, lr.Skipped())
			}
			return nil
		case errors.As(err, &le):
			fmt.Fprintf(stdout, "%s:%d not an access-log line: %v\n", src, le.Line, le.Err)
		case err != nil:
			return fmt.Errorf("explain: read %s: %w", src, err)
		default:
			n++
			fmt.Fprintf(stdout, "%s:%d %s\n", src, e.Line, Entry(set, e))
		}
	}
}

// Entry says what was decided for e, why, and what set decides now.
func Entry(set *rules.Set, e *accesslog.Entry) string {
	host := e.HostName()
	hp := net.JoinHostPort(host, strconv.Itoa(int(e.Port)))
	out := fmt.Sprintf("%s %s logged %s", quote(hp), quote(e.Protocol), quote(e.Decision))
	if e.Rule != "" {
		out += " by rule " + quote(e.Rule)
	}
	switch {
	case e.Decision == "invalid":
		return fmt.Sprintf("%s: refused before any rule was asked (%s); no rule changes that", out, quote(e.Reason))
	case host == "":
		return out + ": no host name (a TLS hello without SNI, or no Host): refused whatever the rules"
	case e.Port == 0:
		return out + ": no port: not decided by the rules"
	}
	allowed, detail := match(set, host, e.Port)
	var why []string
	if allowed {
		out += ", now allow by " + detail
		switch m, _ := set.Match(hp, e.Port); {
		case e.Decision != "allow":
			why = append(why, "a rule allows it now that did not then")
		case e.Upstream == "https" && m.Port.Protocol != rules.HTTPS:
			why = append(why, "it was sent with TLS originated; the port is now "+m.Port.Protocol.String()+": it would go in clear")
		case e.Upstream == "http" && m.Port.Protocol == rules.HTTPS:
			why = append(why, "it was sent in clear; the port is now HTTPS: egressd would originate TLS")
		}
	} else {
		out += ", now deny: " + detail
		switch e.Decision {
		case "would-deny":
			why = append(why, "in enforce mode: "+refusal(e.Protocol))
		case "allow":
			why = append(why, "the rules that allowed it then no longer do")
		}
	}
	// What else happened to it: an upstream failure, the address policy.
	if r := strings.TrimPrefix(strings.TrimPrefix(e.Reason, auditReason), "; "); r != "" && e.Decision != "deny" {
		why = append(why, "then: "+quote(r))
	}
	if len(why) > 0 {
		out += "; " + strings.Join(why, "; ")
	}
	return out
}

// refusal is what a denied client of protocol gets.
func refusal(protocol string) string {
	switch protocol {
	case "tls-passthrough":
		return "a TLS access_denied alert"
	case "grpc":
		return "403 (gRPC PermissionDenied)"
	}
	return "403"
}

// auditReason is the reason l7 logs for a would-deny request (l7/audit.go).
const auditReason = "no egress rule allows the host and port (audit mode: forwarded)"

// quote quotes s when it holds spaces or anything but printable
// ASCII: a value from a log line stays on its line.
func quote(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f || s[i] == '"' {
			return strconv.QuoteToASCII(s)
		}
	}
	return s
}
