package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/egressd/egressd/kube/exempt"
)

// explainPod asks the agent at admin (GET /exempt?pod=) about pod and
// prints one line: exempt (with the reasons), governed, or unknown.
func explainPod(admin, pod string, stdout, stderr io.Writer) error {
	if _, err := parseNamespacedName(pod); err != nil {
		fmt.Fprintf(stderr, "egressd explain: --pod: %v\n", err)
		return exitError{exitUsage}
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + admin + "/exempt?pod=" + url.QueryEscape(pod))
	if err != nil {
		fmt.Fprintf(stderr, "egressd explain: asking the agent at %s: %v\n", admin, err)
		return exitError{exitFailure}
	}
	defer resp.Body.Close()
	var st struct {
		exempt.Status
		Error string `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		fmt.Fprintf(stderr, "egressd explain: the agent at %s answered %s: %v\n", admin, resp.Status, err)
		return exitError{exitFailure}
	}
	switch {
	case resp.StatusCode != http.StatusOK:
		fmt.Fprintf(stdout, "unknown  %s: %s\n", pod, cmp.Or(st.Error, resp.Status))
		return exitError{exitFailure}
	case st.Exempt && len(st.Cgroups) == 0:
		fmt.Fprintf(stdout, "exempt   %s reason=%s: %s; its cgroup is not made yet\n", pod, st.Reasons, st.Why)
	case st.Exempt:
		fmt.Fprintf(stdout, "exempt   %s reason=%s: %s; not redirected: no rule applies to it\n", pod, st.Reasons, st.Why)
	default:
		fmt.Fprintf(stdout, "governed %s: %s; redirected: the rules decide its requests\n", pod, st.Why)
	}
	return nil
}

// parseNamespacedName checks NAMESPACE/NAME.
func parseNamespacedName(s string) (string, error) {
	ns, name, ok := strings.Cut(s, "/")
	if !ok || name == "" || strings.Contains(name, "/") {
		return "", fmt.Errorf("%q: want NAMESPACE/NAME", s)
	}
	if _, err := parseNamespace(ns); err != nil {
		return "", err
	}
	return s, nil
}
