package gossip

import "testing"

// The local profile turns memberlist's compression off: it compresses
// every packet, pings and acks included, with a fresh LZW writer (a 64 KiB
// table), which cost about half of an idle agent's CPU in a 100-agent pool
// (pprof of idle agents, BENCHMARKS.md). LAN keeps memberlist's default.
func TestProfileCompression(t *testing.T) {
	for _, tc := range []struct {
		profile Profile
		want    bool
	}{{ProfileLocal, false}, {ProfileLAN, true}} {
		sc, err := serfConfig(tc.profile)
		if err != nil {
			t.Fatal(err)
		}
		if got := sc.MemberlistConfig.EnableCompression; got != tc.want {
			t.Errorf("profile %q: EnableCompression = %v, want %v", tc.profile, got, tc.want)
		}
	}
}
