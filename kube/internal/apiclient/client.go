package apiclient

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Object is an API object as decoded from JSON.
type Object = map[string]any

// Client talks to one API server. It is safe for concurrent use.
type Client struct {
	cfg *config
	hc  *http.Client
}

// Timeouts: of one list page, and of a watch as the server is asked to
// end it (the client reconnects from where it was).
const (
	listTimeout  = 30 * time.Second
	watchSeconds = 300
)

// New returns a Client for the API server of the kubeconfig file, or of
// the pod's service account when kubeconfig is "".
func New(kubeconfig string) (*Client, error) {
	var cfg *config
	var err error
	if kubeconfig != "" {
		cfg, err = loadKubeconfig(kubeconfig)
	} else {
		cfg, err = inCluster(serviceAccountDir, os.Getenv)
	}
	if err != nil {
		if kubeconfig == "" {
			return nil, fmt.Errorf("kubernetes: in-cluster config: %w (outside a pod, give --kubeconfig)", err)
		}
		return nil, fmt.Errorf("kubernetes: %w", err)
	}
	return newClient(cfg), nil
}

func newClient(cfg *config) *Client {
	// A watch reads for minutes: HTTP/2 pings notice a dead connection
	// (client-go relies on the same), Watch's own deadline an HTTP/1 one.
	tr := &http.Transport{TLSClientConfig: cfg.tls, ForceAttemptHTTP2: true, TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout: 90 * time.Second, ResponseHeaderTimeout: listTimeout,
		HTTP2: &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 15 * time.Second}}
	return &Client{cfg: cfg, hc: &http.Client{Transport: tr}}
}

// Resource names a resource's collection: Group "" for the core API.
type Resource struct{ Group, Version, Resource string }

func (r Resource) String() string {
	if r.Group == "" {
		return r.Version + "/" + r.Resource
	}
	return r.Group + "/" + r.Version + "/" + r.Resource
}

// path is the collection's URL path, in namespace ns ("" every one).
func (r Resource) path(ns string) string {
	p := "/apis/" + r.Group + "/" + r.Version
	if r.Group == "" {
		p = "/api/" + r.Version
	}
	if ns != "" {
		p += "/namespaces/" + url.PathEscape(ns)
	}
	return p + "/" + r.Resource
}

// StatusError is an error status the API server answered with.
type StatusError struct {
	Code    int
	Reason  string
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("API server: %d %s: %s", e.Code, e.Reason, e.Message)
}

// Gone reports whether err says the resource version asked for is too
// old (410 Gone): the caller lists again.
func Gone(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && (se.Code == http.StatusGone || strings.Contains(se.Message, "too old resource version"))
}

func (c *Client) get(ctx context.Context, path string, q url.Values) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", c.cfg.server+path+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "egressd")
	if c.cfg.token != nil {
		tok, err := c.cfg.token.get()
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		se := &StatusError{Code: resp.StatusCode, Reason: http.StatusText(resp.StatusCode), Message: strings.TrimSpace(string(body))}
		var st struct{ Reason, Message string }
		if json.Unmarshal(body, &st) == nil && st.Message != "" {
			se.Reason, se.Message = st.Reason, st.Message
		}
		return nil, se
	}
	return resp, nil
}

// List lists r's objects in namespace ns ("" every one), matching
// fieldSelector if not "", page by page; rv is the list's resource
// version, to watch from.
func (c *Client) List(ctx context.Context, r Resource, ns, fieldSelector string) (items []Object, rv string, err error) {
	q := url.Values{"limit": {"500"}}
	if fieldSelector != "" {
		q.Set("fieldSelector", fieldSelector)
	}
	for {
		var page struct {
			Metadata struct {
				ResourceVersion string `json:"resourceVersion"`
				Continue        string `json:"continue"`
			} `json:"metadata"`
			Items []Object `json:"items"`
		}
		if err := c.getJSON(ctx, r.path(ns), q, &page); err != nil {
			return nil, "", fmt.Errorf("list %s: %w", r, err)
		}
		items = append(items, page.Items...)
		if page.Metadata.Continue == "" {
			return items, page.Metadata.ResourceVersion, nil
		}
		q.Set("continue", page.Metadata.Continue)
	}
}

func (c *Client) getJSON(ctx context.Context, path string, q url.Values, v any) error {
	ctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	resp, err := c.get(ctx, path, q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// Event is one watch event: ADDED, MODIFIED, DELETED, BOOKMARK (Object
// carries only the resource version) or ERROR (a Status).
type Event struct {
	Type   string `json:"type"`
	Object Object `json:"object"`
}

// Watch watches r's objects in every namespace from resource version rv,
// calling fn for each event until the server ends the watch (nil), ctx
// ends, the stream breaks, or an ERROR event comes (a *StatusError).
func (c *Client) Watch(ctx context.Context, r Resource, fieldSelector, rv string, fn func(Event)) error {
	q := url.Values{"watch": {"1"}, "resourceVersion": {rv}, "allowWatchBookmarks": {"true"},
		"timeoutSeconds": {strconv.Itoa(watchSeconds)}}
	if fieldSelector != "" {
		q.Set("fieldSelector", fieldSelector)
	}
	ctx, cancel := context.WithTimeout(ctx, (watchSeconds+30)*time.Second) // the server ends it at watchSeconds
	defer cancel()
	resp, err := c.get(ctx, r.path(""), q)
	if err != nil {
		return fmt.Errorf("watch %s: %w", r, err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	for {
		var ev Event
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("watch %s: %w", r, err)
		}
		if ev.Type == "ERROR" {
			se := &StatusError{}
			if code, ok := ev.Object["code"].(float64); ok {
				se.Code = int(code)
			}
			se.Reason, _ = ev.Object["reason"].(string)
			se.Message, _ = ev.Object["message"].(string)
			return fmt.Errorf("watch %s: %w", r, se)
		}
		fn(ev)
	}
}

// ForServer returns a Client of server without credentials, verifying
// its certificate against the system's roots (tests; a plain-HTTP
// server).
func ForServer(server string) *Client {
	return newClient(&config{server: server, tls: &tls.Config{MinVersion: tls.VersionTLS12}})
}
