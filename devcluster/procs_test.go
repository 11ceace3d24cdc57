package devcluster

import "testing"

func TestUnescapeMountPath(t *testing.T) {
	for in, want := range map[string]string{
		`/tmp/a/data`:           "/tmp/a/data",
		`/tmp/with\040space/x`:  "/tmp/with space/x",
		`/tmp/tab\011and\134bs`: "/tmp/tab\tand\\bs",
		`/tmp/short\04`:         `/tmp/short\04`,
	} {
		if got := unescapeMountPath(in); got != want {
			t.Errorf("unescapeMountPath(%q) = %q, want %q", in, got, want)
		}
	}
}
