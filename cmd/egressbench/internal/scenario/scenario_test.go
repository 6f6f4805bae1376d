package scenario

import "testing"

func TestParse(t *testing.T) {
	if ts, err := Parse("bulk-up-chunked"); err != nil || ts.Bulk != "up" || !ts.Chunked {
		t.Fatalf("Parse(bulk-up-chunked) = %+v, %v", ts, err)
	}
	if ts, err := Parse("lat2000"); err != nil || ts.Rate != 2000 || ts.Conns != 8 {
		t.Fatalf("Parse(lat2000) = %+v, %v", ts, err)
	}
	if _, err := Parse("lat0"); err == nil {
		t.Fatal("Parse(lat0): no error")
	}
}
