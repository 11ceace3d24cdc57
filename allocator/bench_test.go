package allocator

import (
	"fmt"
	"testing"
	"time"
)

func BenchmarkAllocate(b *testing.B) {
	for _, agents := range []int{1000, 10000, 20000} {
		for _, frameworks := range []int{1, 100, 1000, 3000} {
			b.Run(fmt.Sprintf("agents=%d/frameworks=%d", agents, frameworks), func(b *testing.B) {
				s := BenchSnapshot(agents, frameworks)
				now := time.Unix(0, 0)
				b.ReportAllocs()
				b.ResetTimer()
				offers := 0
				for i := 0; b.Loop(); i++ {
					offers = len(Allocate(s, now, uint64(i)))
				}
				b.ReportMetric(float64(offers), "offers/round")
			})
		}
	}
}

// BenchmarkAllocateTraced is BenchmarkAllocate with a trace: the cost of
// explaining a round (the master traces every round).
func BenchmarkAllocateTraced(b *testing.B) {
	for _, agents := range []int{1000, 10000, 20000} {
		for _, frameworks := range []int{1, 100, 1000, 3000} {
			b.Run(fmt.Sprintf("agents=%d/frameworks=%d", agents, frameworks), func(b *testing.B) {
				s := BenchSnapshot(agents, frameworks)
				now := time.Unix(0, 0)
				b.ReportAllocs()
				b.ResetTimer()
				offers := 0
				for i := 0; b.Loop(); i++ {
					var tr Trace
					offers = len(AllocateTraced(s, now, uint64(i), &tr))
				}
				b.ReportMetric(float64(offers), "offers/round")
			})
		}
	}
}

func TestBench(t *testing.T) {
	r := Bench(100, 10, 3, 1)
	if r.Agents != 100 || r.Frameworks != 10 || r.OffersPerCycle != 100 || r.CycleMsP50 <= 0 || r.CycleMsP99 < r.CycleMsP50 {
		t.Fatalf("unexpected result %+v", r)
	}
}
