// Package kvservice is a small replicated key-value store, run as the pods of
// a stateful service on agora (`agora kvservice`). It keeps its data in the
// pod's persistent volume and serves get and put over HTTP. The service
// scheduler's tests and the chaos workload use it as their stateful
// software.
//
// # Configuration
//
// The service scheduler sets these environment variables for each pod; the
// flags of `agora kvservice` (--index, --listen, --data, --peers) override
// them:
//
//   - KV_INDEX: this pod's index in the service, from 0. Pod 0 is the
//     primary, every other pod a follower.
//   - KV_LISTEN: the host:port to serve HTTP on.
//   - KV_DATA: the data directory (the pod's persistent volume). It holds
//     kv.log and, on the primary, the recovery marker primary.recovered.
//   - KV_PEERS: every pod of the service, this one included, as
//     comma-separated index=host:port, e.g.
//     "0=10.0.0.1:31000,1=10.0.0.2:31000,2=10.0.0.3:31000".
//
// From Go: build a [Config] and call [Run], or [New] then [Server.Serve] on
// a listener of your own (the tests do, on 127.0.0.1:0).
//
// # Replication
//
// The primary is fixed: pod 0. It is never elected, so two pods never both
// believe they are the primary while they agree on the peer list. Every write
// goes to the primary, which gives it the next sequence number (seq),
// appends it to its log and fsyncs. Followers pull the primary's log in
// order (a long-polled GET /internal/log) and fsync what they receive before
// asking for more; each request says "I hold everything up to seq N", which
// is the follower's acknowledgement. The primary answers the client 204 only
// when the write is durable on a quorum: a majority of the current peer list,
// the primary counted (2 of 3, 3 of 4, 3 of 5). With fewer pods up, PUT
// waits up to the write timeout (--write-timeout, default 5 s) and answers
// 503 "kvservice: no quorum: write N is durable on 1 of 3 pods ...".
//
// Guarantees. An acknowledged write survives the loss of any pods and
// volumes short of a quorum, and is never lost by a restart of any pod on
// its volume. A write that failed (503, or a dropped connection) has an
// unknown outcome: it is durable on the primary and usually takes effect
// later, as followers copy it. Logs never fork silently: see Epochs.
//
// Reads. GET /kv/KEY on any pod answers from that pod's own state: it may
// be stale (a follower behind the primary), it may show a write whose PUT has
// not been acknowledged yet, and it never goes backwards on one pod (except
// once after a follower discards a diverged log, see Epochs). GET
// /kv/KEY?consistent=1 is answered by the primary (a follower forwards it):
// the primary waits until everything in its log is durable on a quorum, so
// the answer reflects every write acknowledged before the read began.
//
// Writes on a follower are forwarded to the primary and the primary's answer
// is relayed, so a client may send them to any pod; a follower that cannot
// reach the primary answers 503 with the primary's address in X-Kv-Primary.
//
// # Catching up
//
// A follower that restarts on its volume continues pulling after its last
// seq; a new pod with an empty volume pulls the whole log from seq 1. There
// is no compaction: the log is kept (and held in memory) whole, which suits
// an example, not a large data set.
//
// # Recovery
//
// The primary trusts its own log only if the recovery marker
// primary.recovered exists in its data directory. A restarted primary on its
// volume has it and serves at once. A primary that starts without it (its
// first start, or a replacement pod with an empty volume) cannot tell "no
// writes yet" from "my volume was lost", so before taking reads or writes it
// asks the other pods for their logs: it needs answers from n - q + 1 of the
// n - 1 others (q the quorum: 2 of 2 others with 3 pods, 3 of 4 with 5).
// Every acknowledged write is on at least q - 1 of the others, so one of
// those answers has it; the primary copies the longest log, writes the
// marker (fsynced), and from then on serves. Until then reads and writes on
// it answer 503 "kvservice: primary is recovering ...". On a first
// deploy this means writes wait until enough followers run; it does not
// block the deploy, because the primary's readiness does not wait for it.
// One pod alone (n = 1) recovers at once.
//
// # Epochs
//
// Each run of the primary picks a random epoch, stored in every entry it
// creates. A follower's pull names its last seq and that entry's epoch; if
// the primary's entry at that seq has another epoch (or it has none), the
// follower's log holds writes the primary does not: only possible after the
// primary recovered from other pods (those writes were never acknowledged).
// A recovered primary then answers 409 with X-Kv-Reset, and the follower
// discards its log and copies the primary's from seq 1 (logged at WARN).
// Acknowledgements count only for a follower whose log matches.
//
// # Changing the peer list
//
// PUT /peers with a body in the KV_PEERS format replaces a pod's peer list
// without a restart; send it to every running pod (the scheduler does when
// it scales). The quorum follows the new list at once. This is not a
// joint-consensus change: after growing from 3 to 5 pods, writes
// acknowledged under the old quorum (2 pods) are on a majority of the new
// list only once the new pods have caught up, which the scheduler waits for
// (it adds pods one at a time and waits for readiness); shrinking the list
// likewise assumes the remaining pods are caught up. Only a primary
// recovery in that window can miss such a write. The list is held in
// memory: a pod relaunched later must be given the current list in
// KV_PEERS.
//
// The design assumes at most one running pod 0. A stale pod 0 left on a
// partitioned agent cannot acknowledge writes once the followers' peer lists
// point at its replacement, since followers pull only from the address they
// are given.
//
// # Durability
//
// kv.log is a sequence of records: length (4 bytes), CRC-32C of the payload
// (4 bytes), payload (seq, epoch, kind, key length, key, value). A record is
// fsynced before its write is acknowledged (and before the primary serves it
// to followers). On start the log is read back; a torn or corrupt tail (a
// crash during an append) is cut off at the last good record, and a record
// whose seq does not follow its predecessor refuses the start. An append
// that fails (fsync error) makes the pod refuse writes until restarted, and
// its /health answers 503.
//
// # HTTP
//
//   - PUT /kv/KEY, body = value: 204 once durable on a quorum; 400 for an
//     empty key or one longer than [MaxKeyBytes] (1 KiB); 413 for a value
//     larger than [MaxValueBytes] (1 MiB); 503 for no quorum, a recovering
//     primary or shutdown. KEY is the rest of the path and may contain "/".
//   - GET /kv/KEY[?consistent=1]: 200 with the value, 404 if absent.
//   - GET /health: the readiness check the service scheduler polls. 200 on
//     the primary once its log is loaded (recovering or not, so that the
//     followers of a first deploy get launched); 200 on a follower once it
//     has reached the primary's last seq since it started (it stays ready if
//     the primary goes away, serving stale reads); 503 after a disk failure.
//   - GET /status: JSON [Status]: index, role, ready, recovered (primary),
//     peers, quorum, applied_seq, commit_seq, primary_seq (follower), acked
//     (primary: per follower, the seq it holds), keys.
//   - PUT /peers: replace the peer list (400 if it is malformed, misses
//     index 0 or this pod's index).
//   - GET /internal/log: the replication stream (see Server.handleLog).
//
// `agora kvservice` runs until SIGTERM or SIGINT, then answers requests in
// flight (writes still waiting get 503), closes its log and exits 0.
package kvservice
