// Package service is the pure core of `agora service`, the stateful-service
// scheduler: the service spec (Parse), each pod's environment (Env), and the
// deployment plan as a state machine (State). It has no goroutines, no clock
// and no I/O; the driver (a framework on the public SchedulerService) feeds
// it offers, status updates and commands, carries out what it decides, and
// stores the State in Raft. docs/service-spec.md documents the spec format
// and the plan's rules for users.
//
// # The record
//
// A State is one service's whole record: the target Spec, one Pod record per
// pod instance (its pinned agent, reservation labels and id, ports, volume
// id, latest task and its state, readiness), the placements to release, and
// whether an update failed. It is small and JSON-encoded (MarshalBinary,
// UnmarshalBinary), to be stored as a framework-scoped record in Raft. The
// plan's progress is not stored: it is derived from the pod records, so a
// restarted scheduler resumes exactly where the last stored State left off.
//
// # Driving it, step by step
//
//  1. `agora service run FILE`: spec, err := Parse(bytes); st := New(spec,
//     incarnation), where incarnation is unique to this run (the Raft index
//     of the command that stored it). Store st.
//
//  2. Subscribe; on SUBSCRIBED, load every State, reconcile its tasks, and
//     REVIVE the role while st.WantsOffers() (SUPPRESS when no service wants
//     offers).
//
//  3. On each offer: o, err := OfferFromProto(offer, spec.Role); fill
//     o.Reservations and o.Volumes with the role's reservations and volumes
//     on o.AgentID (ReservationFromProto, VolumeFromProto; from the offer
//     once the master puts them there, from the operator API's
//     ListReservations until then). Then
//
//     next := st.Clone()
//     d := next.HandleOffer(o)
//     if d.Accept() { accept(d.OfferID, d.Operations) } else { decline(o.ID) }
//
//     and on success store next and make it st. On a definite failure
//     (the offer was rescinded, the master refused) keep st and drop next.
//     On an ambiguous one (timeout) store next anyway: a launch that did not
//     happen comes back as UNKNOWN on reconciliation and the pod is placed
//     afresh, and a reservation that did happen is re-found from its labels.
//     d.Reasons says, per pod, why the offer was passed over (log it).
//
//  4. On each status update: st.HandleStatus(TaskStatus{...}) and store st.
//     ErrUnknownTask means an old or stray task: kill it unless terminal.
//
//  5. Readiness: for each pod launched, run its check (Pod.Config.Readiness:
//     HTTP on the pod's address, or a command the agent runs) every interval
//     while the task is RUNNING; on the first pass call st.MarkReady(taskID);
//     past the deadline call st.MarkNotReady(taskID, reason). Store st.
//
//  6. After every change: send KILL for each of st.Kills() (idempotent, so
//     it may be sent again), and revive or suppress as st.WantsOffers() says.
//
//  7. Commands: st.Scale(podType, n, purge), st.Update(newSpec),
//     st.Replace(podName) (refuse it while the pod's agent is active unless
//     --force: the core does not know agent states), st.Remove(purge) and
//     delete the record once st.Removed(). When the master reports an agent
//     gone for good, st.ForgetAgent(agentID). Each command is validated
//     here; an error changes nothing (commands run on a Clone).
//
//  8. `agora service status --json` prints st.Status().
//
// # The plan
//
// The plan works on one pod at a time, in plan order (pod types in spec
// order, then index): the first pod that should run and is not yet
// deployed with the target config. Placing a new pod is RESERVE + CREATE +
// LAUNCH in one accept; the next pod starts only when this one is ready. A
// deployed pod whose task dies is recovered beside the plan: relaunched in
// place (LAUNCH alone) with its own config, only on an offer from its own
// agent that carries its reservation and volume. Scale up adds pods at the
// end of the order; scale down retires the highest indexes (killed; their
// reservations and volumes kept unless purged). Update changes the target
// config, so every pod becomes a step in turn: its old task is killed, then
// it is relaunched in place with the new config and must become ready; a
// pod that dies first fails the update and halts the plan until the next
// Update (rolling back is Update with the previous spec). Replace gives a
// pod a new placement and releases the old one.
//
// Reservations carry labels (service, pod type, index, instance id, ports,
// volume id): a State that has lost track of a reservation (a re-run
// service, a lost accept reply) adopts it from an offer, and releases a
// stale one.
package service
