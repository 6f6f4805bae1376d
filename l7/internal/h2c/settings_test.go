package h2c

import (
	"bytes"
	"net"
	"testing"

	"golang.org/x/net/http2"
)

// TestSettingsClampLowersMaxFrameSize: the upstream's first SETTINGS reach
// the transport with MAX_FRAME_SIZE at most 16 KiB, the other settings and
// every later frame unchanged.
func TestSettingsClampLowersMaxFrameSize(t *testing.T) {
	var wire bytes.Buffer
	fr := http2.NewFramer(&wire, nil)
	fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 20}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 20})
	fr.WritePing(false, [8]byte{1, 2, 3})
	srv, cli := net.Pipe()
	go func() { srv.Write(wire.Bytes()); srv.Close() }()
	got := http2.NewFramer(nil, clampUpstreamSettings(cli))
	want := []map[http2.SettingID]uint32{
		{http2.SettingMaxFrameSize: h2MaxFrameSizeToUpstream, http2.SettingInitialWindowSize: 1 << 20},
		{http2.SettingMaxFrameSize: 1 << 20}, // only the first frame is clamped
	}
	for i, w := range want {
		f, err := got.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		sf, ok := f.(*http2.SettingsFrame)
		if !ok {
			t.Fatalf("frame %d: %T", i, f)
		}
		for id, v := range w {
			if g, _ := sf.Value(id); g != v {
				t.Errorf("frame %d: %v = %d, want %d", i, id, g, v)
			}
		}
	}
	if f, err := got.ReadFrame(); err != nil || f.Header().Type != http2.FramePing {
		t.Fatalf("third frame: %v, %v", f, err)
	}
}
