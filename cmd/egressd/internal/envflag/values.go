package envflag

import (
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// String is the parse function of a List of plain strings.
func String(s string) (string, error) { return s, nil }

// ParseCIDR parses a CIDR, or a single address as its /32 or /128.
func ParseCIDR(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return p.Masked(), nil
}

// repeatable marks flag values that accumulate (and split lists from env).
type repeatable interface{ repeatable() }

// Slice is a repeatable flag of parsed values, made by List.
type Slice[T any] struct {
	dst   *[]T
	parse func(string) (T, error)
}

// List is a repeatable flag appending each value, parsed, to *dst.
func List[T any](dst *[]T, parse func(string) (T, error)) *Slice[T] {
	return &Slice[T]{dst: dst, parse: parse}
}

func (f *Slice[T]) repeatable() {}

func (f *Slice[T]) String() string {
	if f == nil || f.dst == nil {
		return ""
	}
	parts := make([]string, len(*f.dst))
	for i, v := range *f.dst {
		parts[i] = fmt.Sprint(v)
	}
	return strings.Join(parts, ",")
}

func (f *Slice[T]) Set(s string) error {
	v, err := f.parse(s)
	if err != nil {
		return err
	}
	*f.dst = append(*f.dst, v)
	return nil
}

// Port is a TCP port flag, 1-65535.
type Port struct{ Dst *uint16 }

func (f Port) String() string {
	if f.Dst == nil {
		return ""
	}
	return strconv.Itoa(int(*f.Dst))
}

func (f Port) Set(s string) error {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return fmt.Errorf("port %q: want 1-65535", s)
	}
	*f.Dst = uint16(n)
	return nil
}

// Uint32 is a 32-bit unsigned flag in any base (0x30e5), shown in hex.
type Uint32 struct{ Dst *uint32 }

func (f Uint32) String() string {
	if f.Dst == nil {
		return ""
	}
	return "0x" + strconv.FormatUint(uint64(*f.Dst), 16)
}

func (f Uint32) Set(s string) error {
	n, err := strconv.ParseUint(s, 0, 32) // 0x1234, 0o..., decimal
	if err != nil {
		return fmt.Errorf("%q: want a 32-bit unsigned number", s)
	}
	*f.Dst = uint32(n)
	return nil
}

// URL is an http[s]://[user:password@]host[:port] flag, shown redacted.
type URL struct{ Dst **url.URL }

func (f URL) String() string {
	if f.Dst == nil || *f.Dst == nil {
		return ""
	}
	return (*f.Dst).Redacted()
}

func (f URL) Set(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return fmt.Errorf("%q: want http[s]://[user:password@]host[:port]", u.Redacted())
	}
	*f.Dst = u
	return nil
}
