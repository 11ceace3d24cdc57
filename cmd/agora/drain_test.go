package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseDeadline(t *testing.T) {
	now := time.Date(2030, 1, 2, 15, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
		err  string
	}{
		{"", time.Time{}, ""},
		{"10m", now.Add(10 * time.Minute), ""},
		{"-1m", now.Add(-time.Minute), ""}, // the masters refuse it (InvalidArgument)
		{"2030-01-02T16:00:00Z", time.Date(2030, 1, 2, 16, 0, 0, 0, time.UTC), ""},
		{"tomorrow", time.Time{}, "want a duration"},
	} {
		got, err := parseDeadline(tc.in, now)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case tc.in == "" && got != nil:
			t.Errorf("%q: %v, want none", tc.in, got)
		case tc.in != "" && !got.AsTime().Equal(tc.want):
			t.Errorf("%q: %v, want %v", tc.in, got.AsTime(), tc.want)
		}
	}
}
