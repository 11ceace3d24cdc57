package chaos

import (
	"reflect"
	"testing"
	"time"
)

func TestScheduleIsReproducible(t *testing.T) {
	c := ScheduleConfig{Seed: 42, Duration: time.Minute, Kinds: ProcessKinds}
	a, b := Schedule(c), Schedule(c)
	if len(a) < 5 {
		t.Fatalf("only %d faults in a minute", len(a))
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed, different schedules")
	}
	c.Seed = 43
	if reflect.DeepEqual(a, Schedule(c)) {
		t.Fatal("different seeds, same schedule")
	}
}

func TestScheduleShape(t *testing.T) {
	c := ScheduleConfig{Seed: 7, Duration: 40 * time.Second, Kinds: []Kind{KillLeader, PauseMaster}}
	var end time.Duration
	for i, f := range Schedule(c) {
		if f.At < 3*time.Second || f.At < end {
			t.Fatalf("fault %d (%s) starts before the previous one healed or during warm-up", i, f)
		}
		if f.Hold < time.Second || f.Hold > 4*time.Second {
			t.Fatalf("fault %d hold %s", i, f.Hold)
		}
		if f.Kind != KillLeader && f.Kind != PauseMaster {
			t.Fatalf("fault %d kind %s not asked for", i, f.Kind)
		}
		end = f.At + f.Hold
	}
	if end > 37*time.Second {
		t.Fatalf("last fault heals at %s, inside the cool-down", end)
	}
}

func TestParseKinds(t *testing.T) {
	if k, err := ParseKinds("", ProcessKinds); err != nil || len(k) != len(ProcessKinds) {
		t.Fatalf("%v %v", k, err)
	}
	if k, err := ParseKinds("kill-leader, pause-master", ProcessKinds); err != nil || len(k) != 2 {
		t.Fatalf("%v %v", k, err)
	}
	if _, err := ParseKinds("partition-leader", ProcessKinds); err == nil {
		t.Fatal("partition accepted by the process tier")
	}
}
