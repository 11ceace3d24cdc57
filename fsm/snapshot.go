package fsm

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/agora-sched/agora/fsm/internal/radix"
	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// Snapshot record types. A snapshot is a sequence of records, each
// uvarint(len(body)+1) | type byte | body; the first is the header.
const (
	recHeader      byte = 1 // body: magic "agora-fsm/1" then uvarint index
	recMaster      byte = 2
	recRole        byte = 3
	recAgent       byte = 4
	recFramework   byte = 5
	recReservation byte = 6
	recVolume      byte = 7
	recOffer       byte = 8
	recTask        byte = 9
	recRecord      byte = 12 // 10 and 11 are history.go's
	recPreemption  byte = 13
)

const snapshotMagic = "agora-fsm/1"

// maxRecord bounds one record so a corrupt length cannot exhaust memory.
const maxRecord = 64 << 20

// tables lists the primary tables in snapshot order.
var tables = []struct {
	rec    byte
	prefix string
	msg    func() proto.Message
}{
	{recMaster, pMaster, func() proto.Message { return &agorav1.Master{} }},
	{recRole, pRole, func() proto.Message { return &agorav1.Role{} }},
	{recAgent, pAgent, func() proto.Message { return &agorav1.Agent{} }},
	{recFramework, pFramework, func() proto.Message { return &agorav1.Framework{} }},
	{recReservation, pReservation, func() proto.Message { return &agorav1.Reservation{} }},
	{recVolume, pVolume, func() proto.Message { return &agorav1.Volume{} }},
	{recOffer, pOffer, func() proto.Message { return &agorav1.Offer{} }},
	{recTask, pTask, func() proto.Message { return &agorav1.Task{} }},
	{recRecord, pRecord, func() proto.Message { return &agorav1.FrameworkRecord{} }},
	{recPreemption, pPreemption, func() proto.Message { return &agorav1.Preemption{} }},
}

// Persist writes the state record by record in a deterministic order
// (tables in a fixed order, keys sorted, deterministic proto encoding), so
// replicas that applied the same log write identical bytes.
//
// One goroutine walks the tables in batches, persistWorkers goroutines
// encode the batches into framed records in parallel, and the caller's
// goroutine writes them to w in walk order (then the history tables).
func (s *State) Persist(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	write := func(rec byte, body []byte) error {
		var hdr [binary.MaxVarintLen64 + 1]byte
		n := binary.PutUvarint(hdr[:], uint64(len(body)+1))
		hdr[n] = rec
		if _, err := bw.Write(hdr[:n+1]); err != nil {
			return err
		}
		_, err := bw.Write(body)
		return err
	}
	head := binary.AppendUvarint([]byte(snapshotMagic), s.index)
	if err := write(recHeader, head); err != nil {
		return err
	}

	work := make(chan *persistBatch, persistQueue)
	ordered := make(chan *persistBatch, persistQueue)
	free := make(chan *persistBatch, persistQueue)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range restoreWorkers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				b.encode()
				close(b.done)
			}
		}()
	}
	go func() {
		defer close(ordered)
		defer close(work)
		var b *persistBatch
		send := func() bool {
			select {
			case work <- b:
			case <-stop:
				return false
			}
			select {
			case ordered <- b:
			case <-stop:
				return false
			}
			b = nil
			return true
		}
		root := s.root.Root()
		for _, tb := range tables {
			ok := true
			root.WalkPrefix([]byte(tb.prefix), func(_ []byte, v interface{}) bool {
				if b == nil {
					select {
					case b = <-free:
						b.msgs, b.recs, b.out, b.err = b.msgs[:0], b.recs[:0], b.out[:0], nil
					default:
						b = &persistBatch{}
					}
					b.done = make(chan struct{})
				}
				b.msgs = append(b.msgs, v.(proto.Message))
				b.recs = append(b.recs, tb.rec)
				if len(b.msgs) == persistBatchRecords {
					ok = send()
				}
				return !ok
			})
			if !ok {
				return
			}
		}
		if b != nil {
			send()
		}
	}()
	var err error
	for b := range ordered {
		<-b.done
		if err == nil {
			err = b.err
			if err == nil {
				_, err = bw.Write(b.out)
			}
			if err != nil {
				close(stop)
			}
		}
		b.msgs = b.msgs[:0] // drop the references to the state
		select {
		case free <- b:
		default:
		}
	}
	wg.Wait()
	if err != nil {
		return err
	}
	if err := s.persistHistory(write); err != nil {
		return err
	}
	return bw.Flush()
}

const (
	// persistBatchRecords is how many records one persist batch holds.
	persistBatchRecords = 1024
	// persistQueue is how many batches may be walked ahead of the writer.
	persistQueue = 8
)

// persistBatch is a run of table records on their way to the snapshot.
type persistBatch struct {
	msgs []proto.Message
	recs []byte
	out  []byte // framed records, filled in by encode
	err  error
	done chan struct{}
}

// encode appends the framed records of the batch to out.
func (b *persistBatch) encode() {
	opts := proto.MarshalOptions{Deterministic: true}
	for i, m := range b.msgs {
		// Leave room for the longest length prefix and the type byte, then
		// move the body if the prefix turns out shorter.
		start := len(b.out)
		b.out = append(b.out, make([]byte, binary.MaxVarintLen64+1)...)
		bodyAt := len(b.out)
		var err error
		b.out, err = opts.MarshalAppend(b.out, m)
		if err != nil {
			b.err = err
			return
		}
		var hdr [binary.MaxVarintLen64 + 1]byte
		n := binary.PutUvarint(hdr[:], uint64(len(b.out)-bodyAt+1))
		hdr[n] = b.recs[i]
		copy(b.out[start:], hdr[:n+1])
		bodyLen := len(b.out) - bodyAt
		copy(b.out[start+n+1:], b.out[bodyAt:])
		b.out = b.out[:start+n+1+bodyLen]
	}
}

// ReadState reads a state written by Persist into a fresh store, rebuilding
// indexes and usage sums.
//
// Records are read in chunks by one goroutine, decoded (tasks by
// taskDecoder, other records by proto.Unmarshal, and key building: the
// bulk of the work) by restoreWorkers goroutines in parallel, and their
// keys collected in snapshot order on this goroutine into one run per
// table and index; the workers sum the usage of the tasks they decode,
// another goroutine that of the other records; at most restoreQueue
// chunks are in flight, which bounds the memory held in raw record
// bodies. radix.Build then makes the tree from the runs, bottom-up and in
// parallel (radix-sorting the index runs that come out of order). The
// garbage collector is paused meanwhile (pauseGC).
func ReadState(r io.Reader) (*State, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	rd := &recordReader{r: br, free: make(chan []byte, restoreQueue)}
	rec, body, err := rd.next()
	if err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	if rec != recHeader || len(body) < len(snapshotMagic) || string(body[:len(snapshotMagic)]) != snapshotMagic {
		return nil, errors.New("not an agora fsm snapshot")
	}
	index, n := binary.Uvarint(body[len(snapshotMagic):])
	if n <= 0 {
		return nil, errors.New("bad snapshot header")
	}

	defer pauseGC()()
	work := make(chan *restoreChunk, restoreQueue)
	ordered := make(chan *restoreChunk, restoreQueue)
	// Key slices go back to the workers once the usage goroutine is done
	// with them.
	freeKVs := make(chan []restoreKV, 2*restoreQueue)
	var wg sync.WaitGroup
	// Each worker sums the usage of the tasks it decodes.
	sums := make([]*taskSums, restoreWorkers())
	for i := range sums {
		sums[i] = newTaskSums()
		wg.Add(1)
		go func() {
			defer wg.Done()
			td := &taskDecoder{in: interner{}}
			for c := range work {
				select {
				case c.kvs = <-freeKVs:
				default:
				}
				c.decode(td, sums[i])
				close(c.done)
			}
		}()
	}
	// The inserter runs here; the reader feeds it from another goroutine.
	stop := make(chan struct{})
	var readErr error
	go func() {
		defer close(ordered)
		defer close(work)
		for {
			c, err := rd.chunk()
			if c != nil {
				select {
				case work <- c:
				case <-stop:
					return
				}
				select {
				case ordered <- c:
				case <-stop:
					return
				}
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					readErr = err
				}
				return
			}
		}
	}()
	// The usage sums are built from the decoded records beside the
	// inserter (those of most tasks by the workers), instead of walking
	// the tree afterwards.
	usage := newUsageBuilder()
	counted := make(chan *restoreChunk, restoreQueue)
	usageDone := make(chan struct{})
	go func() {
		defer close(usageDone)
		for c := range counted {
			for _, kv := range c.kvs {
				if kv.val != nil && !kv.counted {
					usage.add(kv.val)
				}
			}
			select {
			case freeKVs <- c.kvs[:0]:
			default:
			}
		}
	}()
	// Keys go to one run per table or index, in record order; history
	// records (few, and read back as they are restored) to a tree of
	// their own. Build then makes the state's tree of all of them.
	var lists [numRuns]kvBlocks
	hx := &txn{t: writes{Txn: radix.New().Txn()}} // restore: no feed marks

	var insertErr error
	for c := range ordered {
		<-c.done
		if insertErr == nil {
			insertErr = c.collect(&lists, hx)
			if insertErr != nil {
				close(stop)
			} else {
				counted <- c
			}
		}
		select {
		case rd.free <- c.data[:0]:
		default:
		}
	}
	close(counted)
	wg.Wait()
	<-usageDone
	if insertErr != nil {
		return nil, insertErr
	}
	if readErr != nil {
		return nil, readErr
	}
	for _, s := range sums {
		s.merge(usage)
	}
	runs := make([][]radix.KV, 0, numRuns+4)
	for i := range lists {
		runs = append(runs, lists[i].flat())
	}
	var history []radix.KV
	hx.t.Root().Walk(func(k []byte, v interface{}) bool {
		history = append(history, radix.KV{Key: k, Val: v})
		return false
	})
	agents, frameworks := usage.result()
	runs = append(runs, history, usageRun(uAgent, agents), usageRun(uFramework, frameworks))
	// Every agent with a task gets a fresh taskEpoch.
	epochs := make([]radix.KV, 0, len(usage.withTasks))
	for _, id := range sortedKeys(usage.withTasks) {
		epochs = append(epochs, radix.KV{Key: tableKey(uTaskEpoch, id), Val: &taskEpoch{n: 1}})
	}
	runs = append(runs, epochs)
	return &State{index: index, root: radix.Build(runs...), changed: make(chan struct{})}, nil
}

// gcPause counts the restores under way that have the collector paused,
// and keeps the GC percent to put back when the last one ends.
var gcPause struct {
	sync.Mutex
	n       int
	percent int
}

// pauseGC turns the garbage collector off, in effect, until the returned
// function is called; restores may overlap, and the last to end puts back
// the GC percent it found.
//
// Almost all that a restore allocates is the new state, live until the
// restore ends: with the collector on, every doubling of the heap started
// a cycle that marked all the state built so far (at a million tasks, a
// third of the restore's CPU time, with write barriers slowing the
// decoders while it marked) and freed little. Paused, the heap peaks a few
// percent higher (the chunk and key garbage a cycle would have reused),
// and one cycle runs after the restore. The percent is set high
// (gcPausePercent) rather than off (-1), which would first wait for a
// cycle under way to finish marking (the old state's). A memory limit
// (GOMEMLIMIT) still starts a collection when the heap reaches it.
func pauseGC() (resume func()) {
	gcPause.Lock()
	if gcPause.n == 0 {
		gcPause.percent = debug.SetGCPercent(gcPausePercent)
		if gcPause.percent < 0 || gcPause.percent > gcPausePercent {
			debug.SetGCPercent(gcPause.percent) // off or higher already
		}
	}
	gcPause.n++
	gcPause.Unlock()
	return func() {
		gcPause.Lock()
		gcPause.n--
		if gcPause.n == 0 {
			debug.SetGCPercent(gcPause.percent)
		}
		gcPause.Unlock()
	}
}

// gcPausePercent is the GC percent during a restore: the next cycle starts
// when the heap is 10,000 times what the last one left (and at least 40
// GB); the runtime's heap goal arithmetic stays far from overflowing.
const gcPausePercent = 1_000_000

// usageRun returns the keys and values of a usage table, sorted.
func usageRun[V any](prefix string, m map[string]V) []radix.KV {
	run := make([]radix.KV, 0, len(m))
	for _, id := range sortedKeys(m) {
		run = append(run, radix.KV{Key: tableKey(prefix, id), Val: m[id]})
	}
	return run
}

// Runs of restored keys, one per table and index that records fill.
const (
	runMaster = iota
	runRole
	runAgent
	runFramework
	runReservation
	runVolume
	runOffer
	runTask
	runRecord
	runPreemption
	runTaskAgent
	runTaskUnacked
	runTaskID
	runOfferExpiry
	runOfferAgent
	runOfferFw
	runResvAgent
	runVolAgent
	numRuns
)

// kvBlocks is a list of keys that grows by blocks (no copying, and no
// more than a block of spare room, unlike an append-grown slice).
type kvBlocks struct {
	blocks [][]radix.KV
	n      int
}

const kvBlock = 1 << 14

func (l *kvBlocks) add(kv radix.KV) {
	if len(l.blocks) == 0 || len(l.blocks[len(l.blocks)-1]) == kvBlock {
		l.blocks = append(l.blocks, make([]radix.KV, 0, kvBlock))
	}
	last := &l.blocks[len(l.blocks)-1]
	*last = append(*last, kv)
	l.n++
}

// flat returns the list in one slice, dropping the blocks.
func (l *kvBlocks) flat() []radix.KV {
	out := make([]radix.KV, 0, l.n)
	for i, b := range l.blocks {
		out = append(out, b...)
		l.blocks[i] = nil
	}
	l.blocks, l.n = nil, 0
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

const (
	// restoreChunkRecords and restoreChunkBytes bound one chunk of records.
	restoreChunkRecords = 2048
	restoreChunkBytes   = 1 << 20
	// restoreQueue is how many chunks may be read ahead of the inserter.
	restoreQueue = 16
)

// restoreWorkers is how many goroutines decode records: one per core (the
// inserter and the reader wait on them most of the time).
func restoreWorkers() int { return runtime.GOMAXPROCS(0) }

// recordReader reads snapshot records.
type recordReader struct {
	r   *bufio.Reader
	buf []byte
	// free holds chunk buffers the collector is done with (record bodies
	// are copied by decoding, so nothing in the tree points into them).
	free chan []byte
}

// next returns one record; body is valid until the next call.
func (rd *recordReader) next() (byte, []byte, error) {
	n, err := binary.ReadUvarint(rd.r)
	if err != nil {
		return 0, nil, err
	}
	if n == 0 || n > maxRecord {
		return 0, nil, fmt.Errorf("bad record length %d", n)
	}
	if uint64(cap(rd.buf)) < n {
		rd.buf = make([]byte, n)
	}
	rd.buf = rd.buf[:n]
	if _, err := io.ReadFull(rd.r, rd.buf); err != nil {
		return 0, nil, fmt.Errorf("short record: %w", err)
	}
	return rd.buf[0], rd.buf[1:], nil
}

// chunk reads up to restoreChunkRecords records into one chunk that owns
// their bodies. At the end of the input it returns the last records (or
// nil) with io.EOF.
func (rd *recordReader) chunk() (*restoreChunk, error) {
	var c *restoreChunk
	for c == nil || (len(c.recs) < restoreChunkRecords && len(c.data) < restoreChunkBytes) {
		n, err := binary.ReadUvarint(rd.r)
		if err != nil {
			if err == io.ErrUnexpectedEOF {
				err = fmt.Errorf("short record length: %w", err)
			}
			return c, err
		}
		if n == 0 || n > maxRecord {
			return c, fmt.Errorf("bad record length %d", n)
		}
		if c == nil {
			c = &restoreChunk{done: make(chan struct{})}
			select {
			case c.data = <-rd.free:
			default:
				c.data = make([]byte, 0, restoreChunkBytes+int(n))
			}
		}
		off := len(c.data)
		c.data = slices.Grow(c.data, int(n))[:off+int(n)]
		if _, err := io.ReadFull(rd.r, c.data[off:]); err != nil {
			c.data = c.data[:off]
			return c, fmt.Errorf("short record: %w", err)
		}
		c.recs = append(c.recs, restoreRec{off: off, end: off + int(n)})
	}
	return c, nil
}

// restoreChunk is a run of snapshot records on its way to the tree.
type restoreChunk struct {
	data []byte
	recs []restoreRec
	// Filled in by decode:
	kvs  []restoreKV
	err  error // the first record that failed to decode (kvs stop there)
	done chan struct{}
}

type restoreRec struct{ off, end int }

// restoreKV is a key to insert; a nil key stands for a record that the
// inserter handles itself (history records, which read the tree).
type restoreKV struct {
	key []byte
	val interface{}
	rec int32
	run uint8 // which run the key goes to
	// counted is set on a task whose usage the decoding worker summed.
	counted bool
}

// decode unmarshals the chunk's table records and builds their primary and
// index keys.
func (c *restoreChunk) decode(td *taskDecoder, sums *taskSums) {
	if cap(c.kvs) < 3*len(c.recs) {
		c.kvs = make([]restoreKV, 0, 3*len(c.recs))
	}
	for i, r := range c.recs {
		rec, body := c.data[r.off], c.data[r.off+1:r.end]
		if rec == recRemovedOffer || rec == recSuperseded {
			c.kvs = append(c.kvs, restoreKV{rec: int32(i)})
			continue
		}
		var err error
		c.kvs, err = appendRecordKVs(c.kvs, rec, body, td, sums)
		if err != nil {
			c.err = err
			return
		}
	}
}

// collect adds a decoded chunk's keys to their runs and restores its
// history records into hx, in record order.
func (c *restoreChunk) collect(lists *[numRuns]kvBlocks, hx *txn) error {
	for _, kv := range c.kvs {
		if kv.key != nil {
			lists[kv.run].add(radix.KV{Key: kv.key, Val: kv.val})
			continue
		}
		r := c.recs[kv.rec]
		if _, err := hx.restoreHistory(c.data[r.off], c.data[r.off+1:r.end]); err != nil {
			return err
		}
	}
	return c.err
}

// appendRecordKVs decodes one table record and appends its primary key and
// index keys; it adds a task's usage to sums where it can (and marks its
// primary key counted).
func appendRecordKVs(kvs []restoreKV, rec byte, body []byte, td *taskDecoder, sums *taskSums) ([]restoreKV, error) {
	var m proto.Message
	decoded := false
	if rec == recTask {
		m, decoded = td.decode(body)
	}
	if !decoded {
		for _, tb := range tables {
			if tb.rec == rec {
				m = tb.msg()
				break
			}
		}
		if m == nil {
			return kvs, fmt.Errorf("unknown record type %d", rec)
		}
		if err := proto.Unmarshal(body, m); err != nil {
			return kvs, fmt.Errorf("record type %d: %w", rec, err)
		}
	}
	put := func(run uint8, k []byte, v interface{}) { kvs = append(kvs, restoreKV{key: k, val: v, run: run}) }
	switch v := m.(type) {
	case *agorav1.Master:
		put(runMaster, tableKey(pMaster, v.GetId()), v)
	case *agorav1.Role:
		put(runRole, tableKey(pRole, v.GetName()), v)
	case *agorav1.Agent:
		put(runAgent, tableKey(pAgent, v.GetId()), v)
	case *agorav1.Framework:
		if !slices.IsSortedFunc(v.GetFilters(), compareFilter) {
			// Filters are kept sorted by agent id (addFilters, filterOf
			// search them); a snapshot written before they were is sorted
			// here, once.
			slices.SortStableFunc(v.Filters, compareFilter)
		}
		put(runFramework, tableKey(pFramework, v.GetId()), v)
	case *agorav1.Reservation:
		put(runReservation, tableKey(pReservation, v.GetId()), v)
		put(runResvAgent, tableKey(xResvAgent, v.GetAgentId(), v.GetId()), nil)
	case *agorav1.Volume:
		put(runVolume, tableKey(pVolume, v.GetId()), v)
		put(runVolAgent, tableKey(xVolAgent, v.GetAgentId(), v.GetId()), nil)
	case *agorav1.Offer:
		put(runOffer, tableKey(pOffer, v.GetId()), v)
		put(runOfferAgent, tableKey(xOfferAgent, v.GetAgentId(), v.GetId()), nil)
		put(runOfferFw, tableKey(xOfferFw, v.GetFrameworkId(), v.GetId()), nil)
		if v.GetExpiresAt() != nil {
			put(runOfferExpiry, expiryKey(v), nil)
		}
	case *agorav1.FrameworkRecord:
		put(runRecord, tableKey(pRecord, v.GetFrameworkId(), v.GetKey()), v)
	case *agorav1.Preemption:
		put(runPreemption, tableKey(pPreemption, v.GetId()), v)
	case *agorav1.Task:
		if !decoded {
			td.in.task(v)
		}
		// The three keys of a task live and die together (deleteTask):
		// one allocation holds them.
		fid, tid, aid := v.GetFrameworkId(), v.GetId(), v.GetAgentId()
		buf := make([]byte, 0, len(pTask)+len(xTaskAgent)+len(xTaskID)+len(aid)+3*len(fid)+3*len(tid)+4)
		put(runTask, carveKey(&buf, pTask, fid, tid), v)
		kvs[len(kvs)-1].counted = sums.add(v)
		put(runTaskAgent, carveKey(&buf, xTaskAgent, aid, fid, tid), nil)
		put(runTaskID, carveKey(&buf, xTaskID, tid, fid), nil)
		if unacked(v) {
			put(runTaskUnacked, tableKey(xTaskUnacked, fid, tid), nil)
		}
	}
	return kvs, nil
}

// interner shares the strings that repeat across tasks (agent, framework,
// role and resource names), and the status's copies of the task's ids, so
// that a million restored tasks do not hold millions of copies of a few
// thousand strings. One per decoding goroutine.
type interner map[string]string

// maxInterned bounds an interner (ids beyond it are kept as decoded).
const maxInterned = 1 << 16

func (in interner) str(s string) string {
	if v, ok := in[s]; ok {
		return v
	}
	if len(in) < maxInterned {
		in[s] = s
	}
	return s
}

// task interns t's repeated strings; t is freshly decoded and not shared.
func (in interner) task(t *agorav1.Task) {
	t.FrameworkId, t.AgentId, t.Role = in.str(t.FrameworkId), in.str(t.AgentId), in.str(t.Role)
	if st := t.Status; st != nil {
		if st.TaskId == t.Id {
			st.TaskId = t.Id
		}
		if st.FrameworkId == t.FrameworkId {
			st.FrameworkId = t.FrameworkId
		}
		if st.AgentId == t.AgentId {
			st.AgentId = t.AgentId
		}
	}
	for _, r := range t.Resources {
		r.Name, r.Role = in.str(r.Name), in.str(r.Role)
	}
}

// carveKey appends a table key to *buf, whose capacity must hold it, and
// returns it with its capacity capped, leaving the rest of *buf for more.
func carveKey(buf *[]byte, prefix string, parts ...string) []byte {
	b := appendKey(*buf, prefix, parts...)
	*buf = b[len(b):]
	return b[:len(b):len(b)]
}

// poolSum accumulates resources by pool, adding scalars in place (the
// common case) so that summing a million tasks does not copy maps.
type poolSum map[string]*resources.Resources

func (p poolSum) add(role string, rs []*agorav1.Resource) {
	for _, r := range rs {
		if (r.GetRole() != role && role != "\x00") || r.GetVolume() != nil {
			continue // another pool, or a volume's disk (held by the volume)
		}
		acc := p[r.GetRole()]
		if acc == nil {
			acc = &resources.Resources{}
			p[r.GetRole()] = acc
		}
		if len(r.GetRanges()) == 0 && len(r.GetSet()) == 0 {
			if m := milli(r.GetScalar()); m > 0 {
				if acc.Scalars == nil {
					acc.Scalars = map[string]int64{}
				}
				acc.Scalars[r.GetName()] += m
			}
			continue
		}
		one, err := resourcepb.FromProto([]*agorav1.Resource{r})
		if err == nil {
			*acc = acc.Add(one[r.GetRole()])
		}
	}
}

// addScalar adds a scalar of m milli-units to pool role.
func (p poolSum) addScalar(role, name string, m int64) {
	acc := p[role]
	if acc == nil {
		acc = &resources.Resources{}
		p[role] = acc
	}
	if m > 0 {
		if acc.Scalars == nil {
			acc.Scalars = map[string]int64{}
		}
		acc.Scalars[name] += m
	}
}

// milli is resources.Scalar(name, v).Milli(name) without building a map.
func milli(v float64) int64 {
	if math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 {
		return 0
	}
	return int64(math.Round(min(v, resources.MaxScalar) * 1000))
}

func (p poolSum) addPools(q resourcepb.Pools) {
	for role, r := range q {
		acc := p[role]
		if acc == nil {
			acc = &resources.Resources{}
			p[role] = acc
		}
		*acc = acc.Add(r)
	}
}

func (p poolSum) pools() resourcepb.Pools {
	out := resourcepb.Pools{}
	for role, r := range p {
		if !r.IsEmpty() {
			out[role] = *r
		}
	}
	return out
}

// usageBuilder sums every agent's and framework's usage from primary
// records fed to it in any order.
type usageBuilder struct {
	agents  map[string]*agentUsage
	acc     map[string]*usageSums
	fwAcc   map[string]poolSum
	fwTasks map[string]int
	// withTasks holds the agents that have a task, terminal or not.
	withTasks map[string]bool
}

type usageSums struct{ reserved, used, offered poolSum }

func newUsageBuilder() *usageBuilder {
	return &usageBuilder{agents: map[string]*agentUsage{}, acc: map[string]*usageSums{},
		fwAcc: map[string]poolSum{}, fwTasks: map[string]int{}, withTasks: map[string]bool{}}
}

func (b *usageBuilder) ag(id string) *usageSums {
	s := b.acc[id]
	if s == nil {
		s = &usageSums{poolSum{}, poolSum{}, poolSum{}}
		b.acc[id] = s
		b.agents[id] = &agentUsage{}
	}
	return s
}

func (b *usageBuilder) fw(id, role string, rs []*agorav1.Resource) {
	p := b.fwAcc[id]
	if p == nil {
		p = poolSum{}
		b.fwAcc[id] = p
	}
	for _, r := range rs {
		if len(r.GetRanges()) == 0 && len(r.GetSet()) == 0 && r.GetVolume() == nil {
			p.addScalar(role, r.GetName(), milli(r.GetScalar()))
		}
	}
}

// add counts one primary record (other values are ignored).
func (b *usageBuilder) add(v interface{}) {
	switch v := v.(type) {
	case *agorav1.Agent:
		b.ag(v.GetId())
		b.agents[v.GetId()].total = pools(v.GetResources()).Total()
	case *agorav1.Reservation:
		b.ag(v.GetAgentId()).reserved.addPools(resourcepb.Pools{v.GetRole(): pools(v.GetResources()).Total()})
	case *agorav1.Volume:
		b.ag(v.GetAgentId()).used.addPools(volumeDisk(v))
	case *agorav1.Offer:
		b.ag(v.GetAgentId()).offered.add("\x00", v.GetResources())
		b.fw(v.GetFrameworkId(), v.GetRole(), v.GetResources())
	case *agorav1.Task:
		b.withTasks[v.GetAgentId()] = true
		if IsTerminal(v.GetState()) {
			return
		}
		b.ag(v.GetAgentId()).used.add("\x00", v.GetResources())
		b.fw(v.GetFrameworkId(), v.GetRole(), v.GetResources())
		b.fwTasks[v.GetFrameworkId()]++
	}
}

// result returns the sums.
func (b *usageBuilder) result() (map[string]*agentUsage, map[string]*frameworkUsage) {
	for id, s := range b.acc {
		u := b.agents[id]
		u.reserved, u.used, u.offered = s.reserved.pools(), s.used.pools(), s.offered.pools()
	}
	frameworks := make(map[string]*frameworkUsage, len(b.fwAcc))
	for id, p := range b.fwAcc {
		byRole := map[string]resources.Resources{}
		for role, r := range p.pools() {
			byRole[role] = r
		}
		frameworks[id] = &frameworkUsage{byRole: byRole, tasks: b.fwTasks[id]}
	}
	return b.agents, frameworks
}

// computeUsage derives every agent's and framework's sums from the primary
// tables (CheckInvariants audits the incremental sums with it; restore
// feeds the same builder from the records as it reads them).
func computeUsage(root *radix.Node) (map[string]*agentUsage, map[string]*frameworkUsage) {
	b := newUsageBuilder()
	for _, prefix := range []string{pAgent, pReservation, pVolume, pOffer, pTask} {
		root.WalkPrefix([]byte(prefix), func(_ []byte, v interface{}) bool {
			b.add(v)
			return false
		})
	}
	return b.result()
}

// CheckInvariants verifies that, for every agent and pool, used + offered
// fit in what is available; that every live victim of a preemption is
// being killed for it; that reservations fit in the agent's total;
// that every offer's framework and agent exist; and that the incrementally
// kept sums equal sums recomputed from the records. It returns the first
// violation found.
func (s *State) CheckInvariants() error {
	root := s.root.Root()
	var err error
	root.WalkPrefix([]byte(pOffer), func(_ []byte, v interface{}) bool {
		o := v.(*agorav1.Offer)
		if _, ok := s.Framework(o.GetFrameworkId()); !ok {
			err = fmt.Errorf("offer %s: framework %s does not exist", o.GetId(), o.GetFrameworkId())
		} else if _, ok := s.Agent(o.GetAgentId()); !ok {
			err = fmt.Errorf("offer %s: agent %s does not exist", o.GetId(), o.GetAgentId())
		}
		return err != nil
	})
	if err != nil {
		return err
	}
	volumeUser := map[string]string{} // volume -> live task using it
	root.WalkPrefix([]byte(pTask), func(_ []byte, v interface{}) bool {
		t := v.(*agorav1.Task)
		if !IsTerminal(t.GetState()) {
			for _, vid := range t.GetVolumeIds() {
				if other, ok := volumeUser[vid]; ok {
					err = fmt.Errorf("volume %s used by two live tasks: %s and %s/%s", vid, other, t.GetFrameworkId(), t.GetId())
					return true
				}
				volumeUser[vid] = t.GetFrameworkId() + "/" + t.GetId()
				if vol, ok := s.Volume(vid); !ok || vol.GetAgentId() != t.GetAgentId() {
					err = fmt.Errorf("live task %s/%s uses volume %s, which is not on its agent %s", t.GetFrameworkId(), t.GetId(), vid, t.GetAgentId())
					return true
				}
			}
		}
		if _, ok := s.Agent(t.GetAgentId()); !ok {
			err = fmt.Errorf("task %s/%s: agent %s does not exist", t.GetFrameworkId(), t.GetId(), t.GetAgentId())
		} else if _, ok := s.Framework(t.GetFrameworkId()); !ok {
			err = fmt.Errorf("task %s/%s: framework does not exist", t.GetFrameworkId(), t.GetId())
		}
		return err != nil
	})
	if err != nil {
		return err
	}
	if err := s.checkDrains(); err != nil {
		return err
	}
	root.WalkPrefix([]byte(pPreemption), func(_ []byte, v interface{}) bool {
		p := v.(*agorav1.Preemption)
		for _, r := range p.GetVictims() {
			t, ok := s.Task(r.GetFrameworkId(), r.GetTaskId())
			if ok && !IsTerminal(t.GetState()) && (!t.GetKillRequested() || t.GetKillReason() != KillReasonPreempted) {
				err = fmt.Errorf("preemption %s: live victim %s/%s is not being killed for it", p.GetId(), t.GetFrameworkId(), t.GetId())
				return true
			}
		}
		return false
	})
	if err != nil {
		return err
	}
	agents, frameworks := computeUsage(root)
	root.WalkPrefix([]byte(uAgent), func(k []byte, v interface{}) bool {
		id := string(k[len(uAgent):])
		if _, ok := agents[id]; !ok {
			agents[id] = &agentUsage{}
		}
		return false
	})
	for id, want := range agents {
		got, ok := get[*agentUsage](s, tableKey(uAgent, id))
		if !ok {
			got = &agentUsage{}
		}
		if !got.total.Equal(want.total) || !got.reserved.Equal(want.reserved) || !got.used.Equal(want.used) || !got.offered.Equal(want.offered) {
			return fmt.Errorf("agent %s: kept usage (total %s reserved %s used %s offered %s) differs from recomputed (total %s reserved %s used %s offered %s)",
				id, got.total, got.reserved, got.used, got.offered, want.total, want.reserved, want.used, want.offered)
		}
		if !want.total.Contains(want.reserved.Total()) {
			return fmt.Errorf("agent %s: reservations %s exceed total %s", id, want.reserved, want.total)
		}
		av := want.available()
		for _, role := range want.used.Add(want.offered).Roles() {
			if need := want.used[role].Add(want.offered[role]); !av[role].Contains(need) {
				return fmt.Errorf("agent %s pool %q: used %s + offered %s exceed available %s", id, role, want.used[role], want.offered[role], av[role])
			}
		}
	}
	var fwErr error
	root.WalkPrefix([]byte(uFramework), func(k []byte, v interface{}) bool {
		id := string(k[len(uFramework):])
		got := v.(*frameworkUsage)
		want := frameworks[id]
		if want == nil {
			want = &frameworkUsage{}
		}
		if !equalByRole(got.byRole, want.byRole) {
			fwErr = fmt.Errorf("framework %s: kept allocation %v differs from recomputed %v", id, got.byRole, want.byRole)
		}
		if got.tasks != want.tasks {
			fwErr = fmt.Errorf("framework %s: kept %d non-terminal tasks, recomputed %d", id, got.tasks, want.tasks)
		}
		delete(frameworks, id)
		return fwErr != nil
	})
	if fwErr != nil {
		return fwErr
	}
	for id, u := range frameworks {
		if len(u.byRole) > 0 || u.tasks > 0 {
			return fmt.Errorf("framework %s: allocation not kept", id)
		}
	}
	return nil
}

func equalByRole(a, b map[string]resources.Resources) bool {
	for role, r := range a {
		if !r.Equal(b[role]) {
			return false
		}
	}
	for role, r := range b {
		if !r.Equal(a[role]) {
			return false
		}
	}
	return true
}
