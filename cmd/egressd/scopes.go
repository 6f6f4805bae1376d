package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"

	"github.com/egressd/egressd/cgroupid"
	"github.com/egressd/egressd/l7"
	"github.com/egressd/egressd/rules"
)

// cgroupRules is one --cgroup-rules value: the processes of Cgroup (and of
// the cgroups below it) are decided by Rules on top of --rules.
type cgroupRules struct {
	Cgroup string // cleaned absolute directory
	Rules  string // file or directory, as --rules
}

// parseCgroupRules parses DIR=RULES.
func parseCgroupRules(s string) (cgroupRules, error) {
	dir, path, ok := strings.Cut(s, "=")
	if !ok || dir == "" || path == "" {
		return cgroupRules{}, fmt.Errorf("%q: want CGROUP_DIR=RULES_PATH", s)
	}
	if !filepath.IsAbs(dir) {
		return cgroupRules{}, fmt.Errorf("%q: the cgroup directory must be an absolute path", s)
	}
	return cgroupRules{Cgroup: filepath.Clean(dir), Rules: path}, nil
}

// fileScope is the rules of one --cgroup-rules cgroup: its own files,
// reloaded as --rules are, layered on the global rules.
type fileScope struct {
	dir    string
	own    *rules.Reloader
	scope  l7.Scope // Rules: the layered set; Namespace: dir
	layers *rules.Layered
}

// cgroupScopes is the l7.Scoper of --cgroup-rules: a connection from a
// process in (or below) one of the cgroups gets that cgroup's rules, the
// most specific cgroup winning; any other gets the global rules.
type cgroupScopes struct {
	index  *cgroupid.Index
	scopes []*fileScope // longest directory first
	log    *slog.Logger

	warned cgroupid.Throttle // unknown cgroup IDs already logged
}

// newCgroupScopes loads every --cgroup-rules' files (an error is fatal, as
// for --rules) and indexes the cgroups. Each cgroup must be one of the
// redirected cgroups or below one: another's connections never reach the
// proxy. check vets every version of a scope's files, as it does --rules';
// a version whose rules conflict with the global ones is refused too.
func newCgroupScopes(specs []cgroupRules, redirected []string, global *rules.Reloader, check func(*rules.Set) error, hook *reloadHook, log *slog.Logger) (*cgroupScopes, error) {
	c := &cgroupScopes{log: log}
	for _, sp := range specs {
		if !slices.ContainsFunc(redirected, func(r string) bool { return within(sp.Cgroup, filepath.Clean(r)) }) {
			return nil, fmt.Errorf("%w: --cgroup-rules %s: not a --cgroup nor below one, so its processes are not redirected", errUsage, sp.Cgroup)
		}
		if slices.ContainsFunc(c.scopes, func(s *fileScope) bool { return s.dir == sp.Cgroup }) {
			return nil, fmt.Errorf("%w: --cgroup-rules %s given twice", errUsage, sp.Cgroup)
		}
		if _, ok := cgroupid.ID(sp.Cgroup); !ok {
			return nil, fmt.Errorf("--cgroup-rules %s: no such cgroup directory", sp.Cgroup)
		}
		slog := log.With("cgroup", sp.Cgroup)
		own, err := rules.NewReloader([]string{sp.Rules}, rules.ReloaderOptions{Logger: slog, Check: scopeCheck(global, check), OnReload: hook.onReload})
		if err != nil {
			return nil, fmt.Errorf("--cgroup-rules %s: %w", sp.Cgroup, err)
		}
		fs := &fileScope{dir: sp.Cgroup, own: own}
		fs.layers = rules.NewLayered(global, own, func(dropped []string) {
			for _, d := range dropped {
				slog.Warn("scoped rule left out: it conflicts with the global rules", "rule", d)
			}
		})
		fs.scope = l7.Scope{Rules: fs.layers, Namespace: sp.Cgroup}
		c.scopes = append(c.scopes, fs)
	}
	slices.SortStableFunc(c.scopes, func(a, b *fileScope) int { return len(b.dir) - len(a.dir) })
	if len(c.scopes) > 0 {
		c.index = cgroupid.New(redirected...)
	}
	return c, nil
}

// scopeCheck is the Check of a scope's own rules: check's, and no rule
// that conflicts with the global rules in force.
func scopeCheck(global rules.Source, check func(*rules.Set) error) func(*rules.Set) error {
	return func(s *rules.Set) error {
		if check != nil {
			if err := check(s); err != nil {
				return err
			}
		}
		if _, dropped := rules.Layer(global.Current(), s); len(dropped) > 0 {
			return fmt.Errorf("conflicts with the global rules: %s", strings.Join(dropped, "; "))
		}
		return nil
	}
}

// within reports whether dir is root or below it.
func within(dir, root string) bool {
	return dir == root || strings.HasPrefix(dir, strings.TrimSuffix(root, "/")+"/")
}

// Scope implements l7.Scoper.
func (c *cgroupScopes) Scope(id uint64) l7.Scope {
	p, ok := c.index.Path(id)
	if !ok {
		c.warnUnknown(id)
		return l7.Scope{}
	}
	for _, s := range c.scopes {
		if within(p, s.dir) {
			return s.scope
		}
	}
	return l7.Scope{}
}

// warnUnknown logs, at most once a minute per ID, a connection whose
// cgroup is not found below the redirected cgroups.
func (c *cgroupScopes) warnUnknown(id uint64) {
	if !c.warned.Due(id) {
		return
	}
	c.log.Warn("connection from a cgroup not found below the redirected cgroups: decided by the global rules", "cgroup_id", id)
}

// ruleSources are the rule files egressd watches and reloads: --rules
// first, then each --cgroup-rules'.
type ruleSources []*rules.Reloader

// Watch runs every Reloader's Watch until ctx ends; an error (watching
// could not start) is the first one, once all have returned.
func (rs ruleSources) Watch(ctx context.Context) error {
	errs := make(chan error, len(rs))
	for _, r := range rs {
		go func() { errs <- r.Watch(ctx) }()
	}
	var all []error
	for range rs {
		if err := <-errs; err != nil {
			all = append(all, err)
		}
	}
	return errors.Join(all...)
}

// Reload reloads every set of files (SIGHUP); each logs and counts its
// own refusal.
func (rs ruleSources) Reload() error {
	var all []error
	for _, r := range rs {
		all = append(all, r.Reload())
	}
	return errors.Join(all...)
}
