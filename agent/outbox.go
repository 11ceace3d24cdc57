package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/agora-sched/agora/atomicfile"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// outbox is the durable, ordered queue of status updates not yet committed
// by the masters. Every change rewrites the file with atomicfile.Write, so
// after a crash it holds exactly the updates appended and not yet removed.
type outbox struct {
	path string

	mu     sync.Mutex
	items  []*agorav1.TaskStatus
	notify chan struct{} // capacity 1: something was appended
}

type outboxFile struct {
	Version  int               `json:"version"`
	Statuses []json.RawMessage `json:"statuses"`
}

// openOutbox loads the outbox at path (a missing file is an empty outbox).
func openOutbox(path string) (*outbox, error) {
	o := &outbox{path: path, notify: make(chan struct{}, 1)}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return o, nil
	}
	if err != nil {
		return nil, fmt.Errorf("agent: open outbox: %w", err)
	}
	var f outboxFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("agent: outbox %s is corrupt: %w", path, err)
	}
	for i, raw := range f.Statuses {
		st := &agorav1.TaskStatus{}
		if err := protojson.Unmarshal(raw, st); err != nil {
			return nil, fmt.Errorf("agent: outbox %s: status %d is corrupt: %w", path, i, err)
		}
		o.items = append(o.items, st)
	}
	if len(o.items) > 0 {
		o.notify <- struct{}{}
	}
	return o, nil
}

// Append durably adds statuses at the end of the queue.
func (o *outbox) Append(sts ...*agorav1.TaskStatus) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	next := append(slices.Clone(o.items), sts...)
	if err := o.persist(next); err != nil {
		return err
	}
	o.items = next
	select {
	case o.notify <- struct{}{}:
	default:
	}
	return nil
}

// Peek returns up to n statuses from the head of the queue.
func (o *outbox) Peek(n int) []*agorav1.TaskStatus {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.items[:min(n, len(o.items))])
}

// Remove durably drops the statuses with the given uuids.
func (o *outbox) Remove(uuids ...string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	next := slices.DeleteFunc(slices.Clone(o.items), func(st *agorav1.TaskStatus) bool {
		return slices.Contains(uuids, st.GetUuid())
	})
	if len(next) == len(o.items) {
		return nil
	}
	if err := o.persist(next); err != nil {
		return err
	}
	o.items = next
	return nil
}

// Len returns how many statuses wait for delivery.
func (o *outbox) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.items)
}

// Notify is signalled after each Append.
func (o *outbox) Notify() <-chan struct{} { return o.notify }

func (o *outbox) persist(items []*agorav1.TaskStatus) error {
	f := outboxFile{Version: 1, Statuses: make([]json.RawMessage, 0, len(items))}
	for _, st := range items {
		b, err := protojson.Marshal(st)
		if err != nil {
			return fmt.Errorf("agent: encode status: %w", err)
		}
		f.Statuses = append(f.Statuses, b)
	}
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("agent: encode outbox: %w", err)
	}
	if err := atomicfile.Write(o.path, b, 0o600); err != nil {
		return fmt.Errorf("agent: write outbox: %w", err)
	}
	return nil
}

// launchedSet remembers, durably, which tasks this agent has launched (or
// decided not to launch), so that it never runs a task twice: not after a
// restart, and not while the task's terminal update is still in the outbox.
type launchedSet struct {
	path string

	mu  sync.Mutex
	ids map[string]bool // taskKey(framework, task)
}

type launchedFile struct {
	Version int      `json:"version"`
	Tasks   []string `json:"tasks"`
}

func openLaunched(path string) (*launchedSet, error) {
	l := &launchedSet{path: path, ids: map[string]bool{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return nil, fmt.Errorf("agent: open launch checkpoint: %w", err)
	}
	var f launchedFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("agent: launch checkpoint %s is corrupt: %w", path, err)
	}
	for _, id := range f.Tasks {
		l.ids[id] = true
	}
	return l, nil
}

func taskKey(frameworkID, taskID string) string { return frameworkID + "/" + taskID }

// Has reports whether the task was launched.
func (l *launchedSet) Has(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ids[key]
}

// Add durably records a launch; it must succeed before the task starts.
func (l *launchedSet) Add(key string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ids[key] {
		return nil
	}
	l.ids[key] = true
	if err := l.persistLocked(); err != nil {
		delete(l.ids, key)
		return err
	}
	return nil
}

// Retain forgets every task for which keep returns false.
func (l *launchedSet) Retain(keep func(key string) bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	changed := false
	for k := range l.ids {
		if !keep(k) {
			delete(l.ids, k)
			changed = true
		}
	}
	if !changed {
		return nil
	}
	return l.persistLocked()
}

func (l *launchedSet) persistLocked() error {
	f := launchedFile{Version: 1, Tasks: make([]string, 0, len(l.ids))}
	for k := range l.ids {
		f.Tasks = append(f.Tasks, k)
	}
	slices.Sort(f.Tasks)
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("agent: encode launch checkpoint: %w", err)
	}
	if err := atomicfile.Write(l.path, b, 0o600); err != nil {
		return fmt.Errorf("agent: write launch checkpoint: %w", err)
	}
	return nil
}
