// Package scheduler runs `agora service`: it drives package service's pure
// core as frameworks on the public SchedulerService (through the Go SDK,
// package framework), keeps every service's State in Raft as a
// framework-scoped record, and is hosted by the leader master.
//
// # One framework per service
//
// Each service is its own framework, named "agora-service:<name>", with the
// spec's role and principal "agora-service", and a failover timeout of a
// week (FailoverTimeout): its tasks survive any number of master failovers
// and a scheduler that is away for a while. Its one record, key
// "service/state", is the service's whole State (service.State's JSON),
// written with compare-and-set on the record's version after every change.
// The framework id is the service's incarnation, so task and volume ids of
// a re-run service never collide with an earlier one's.
//
// # Hosting: the leader master, moved on failover
//
// The leader master runs a Host as one of its leader-only tasks (see
// master/leader.go), for the length of its leadership: on establish the
// Host lists the frameworks named "agora-service:*" that are not torn down
// (OperatorService.ListFrameworks) and starts one driver per service,
// which resubscribes with the service's framework id and loads its State
// from Raft; on revoke the leadership context ends and every driver stops.
// A new leader does the same, so every service resumes from its last
// stored State within one election plus one subscription.
//
// Why the leader, rather than a separate process that masters restart:
//
//   - No new single point of failure and nothing to deploy: the service
//     scheduler is up exactly when the cluster can accept writes at all
//     (without a leader no Accept, Kill or record write could succeed
//     anyway), and it moves with leadership, which Raft already elects.
//   - At most one live driver per service: a deposed leader's drivers stop
//     with its leadership context, and even one that lingers cannot act:
//     its stream token is replaced by the new leader's subscription, and
//     the FSM refuses its calls and its record writes (PermissionDenied).
//   - It still dogfoods the two-level API: the drivers talk to their own
//     master over HTTP through the SDK like any framework (offers, accepts,
//     kills, reconciliation and records), and learn reservations from the
//     operator API.
//
// The price: the leader does a little more work (one goroutine and one
// stream per service), and a failover pauses every service for the
// election (~1 s with the default Raft profile) plus a resubscription.
//
// # Commands
//
// The operator RPCs (RunService, ScaleService, UpdateService,
// ReplaceServicePod, RemoveService) reach the leader and call the Host in
// process: Host.Run starts a new service's framework and stores its first
// State; Host.Command runs one of service.State's commands on a Clone of
// the driver's State, and stores the result before answering, so a command
// answered OK is in Raft and an error changes nothing. The driver is the
// single writer of its record. Reads (ListServices, GetService) come from
// the records in the master's state, without the Host.
//
// # What the driver does (service/doc.go's steps)
//
// On SUBSCRIBED it loads the State (or stores the first one), reconciles
// its tasks explicitly, and kills, revives or suppresses as the State says.
// Offers go through State.HandleOffer, with the role's reservations and
// volumes on the offer's agent from Reservations (ListReservations until
// offers carry them: one function to switch); accepted decisions are sent
// as one Accept, the others declined. Status updates go through
// HandleStatus; an unknown task that is not terminal is killed. Readiness:
// an HTTP check runs against the pod's host and named port every interval
// once its task is RUNNING, and MarkReady or, past the deadline,
// MarkNotReady follow. A command readiness check is not run (the agent
// cannot run a command beside a task yet): such a pod counts as ready once
// RUNNING, and the driver logs that it did so. After every change the new
// State is stored (compare-and-set; on a conflict or an unknown outcome the
// driver reloads the record, which is the truth), kills are sent (again
// after KillResend), and offers are revived or suppressed by WantsOffers.
// A removed service whose State says Removed has its record deleted and
// its framework torn down.
package scheduler
