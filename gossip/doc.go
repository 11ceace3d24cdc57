// Package gossip is agora's cluster membership: a thin wrapper over
// hashicorp/serf (with memberlist underneath) shared by masters and agents.
// Every process is one member of a single LAN pool; its [Tags] say what it
// is (role "master" or "agent", its id, its HTTP address).
//
// Driving it:
//
//  1. Build a [Config]: a unique NodeName ("master/m1", "agent/a1"), a
//     BindAddr ("127.0.0.1:0" picks a free port, used for both UDP and TCP),
//     the Tags, a [Profile] and a logger. Call [New]; the member is alive in
//     a pool of one and [Pool.Addr] is the address others join.
//  2. Call [Pool.JoinRetry] (or [Pool.Join]) with the addresses of known
//     members. Our own address may be in the list; it is skipped, so every
//     process can be started with the same --join list.
//  3. Read [Pool.Events]: one [Event] per member and change (join, update,
//     leave, failed, reap). The channel is buffered and never blocks serf:
//     when the reader falls behind by more than the buffer, the oldest
//     event is dropped and counted in [Pool.Dropped]. A reader that cannot
//     afford to lose events should treat a non-zero Dropped as "resync from
//     [Pool.Members]".
//  4. [Pool.SetTags] changes our tags (others see an EventUpdate).
//  5. [Pool.Ping] probes one member directly (a memberlist ping to its
//     gossip address), outside the failure detector: the master's liveness
//     uses it to confirm a failure before acting on it.
//  6. [Pool.Leave] announces a graceful departure (others see EventLeave);
//     [Pool.Shutdown] stops the member. Shutdown without Leave looks like a
//     crash to the rest of the pool (they see EventFailed), which is what
//     tests use to simulate SIGKILL.
//
// Node names may hold slashes ("agent/a1"): on the wire they are
// percent-escaped, because serf reconnects a failed member by joining
// "name/host:port" and memberlist splits that at the first slash. Serf's
// and memberlist's own log lines therefore show "agent%2Fa1"; every name
// this package returns is unescaped.
//
// # Profiles
//
// [ProfileLAN] is memberlist's DefaultLANConfig with serf's defaults: 1 s
// probes, 500 ms probe timeout, suspicion 4*log10(n) probe intervals, gossip
// every 200 ms, push-pull every 30 s. A crashed member is declared failed
// after several seconds (measured ~8 s at 50 members); that is the price of
// not suspecting healthy members on a real, busy network.
//
// [ProfileLocal] is tuned for loopback (tests, `agora dev`): 200 ms probes,
// 100 ms probe timeout, short suspicion (3*log10(n) intervals, at most 3x
// that without confirmations), gossip every 50 ms to 4 members with
// retransmit multiplier 4 (a join reaches every member of a 100-member pool
// in ~0.2 s), push-pull every 5 s (memberlist scales it up above 32
// members), a dead member's name reclaimable at once (a restarted member
// may come back on a new port), serf's reap and reconnect loops every
// second and failed members reaped after a minute. Measured on 2 cores:
// failure detected in p50 1.0 s / p99 1.2 s at 3 members, 1.6 s / 1.8 s at
// 50 (LAN: 6.0 s / 6.8 s and 8.5 s / 9.5 s). It is not memberlist's
// DefaultLocalConfig, which lost join gossip at 50 members.
//
// A newcomer learns the existing pool from the push-pull with the members
// it contacts, not from gossip (which only carries news); join through
// several members, or a recently converged one, to see everyone at once.
//
// # Restart with the same name
//
// A member that crashes and restarts with the same NodeName starts with a
// fresh incarnation number. When it joins, the pool tells it that it is
// dead; memberlist refutes that with a higher incarnation and everyone
// marks it alive again (EventJoin). Serf's name conflict resolution only
// runs for two live members claiming one name; a dead predecessor at the
// same address never triggers it.
//
// # Encryption
//
// Config.Keyring turns on memberlist's gossip encryption: the first key is
// the primary (used to encrypt), all are tried for decryption, so keys can
// be rotated by adding the new one everywhere first.
package gossip
