// Package framework is the Go SDK for writing agora frameworks: programs
// with their own scheduler that receive resource offers from the masters and
// launch tasks on agents (two-level scheduling, as in Mesos).
//
// # Writing a framework
//
// Implement Scheduler: six methods that receive the events of the
// framework's subscription. Run connects to the masters and calls them from
// one goroutine, in order:
//
//   - Subscribed: the framework is registered (again, after a reconnection
//     or master failover: resubscribed is true). Keep the id if the
//     scheduler itself may restart: pass it back in Config.Info.Id to keep
//     the framework's tasks.
//   - Offers: resources of one agent each. Answer every offer, with
//     Driver.Accept (operations built with Launch, LaunchGroup, Reserve,
//     Unreserve, CreateVolume, DestroyVolume) or Driver.Decline. Unused
//     resources return to the pool, filtered from this framework for
//     refuse_seconds. When there is nothing more to run, call
//     Driver.Suppress; call Driver.Revive when there is again. When what
//     is offered does not fit what must run, say so with Driver.Demand
//     (shapes and counts per role): a role of a higher priority then gets
//     room from lower priorities' revocable tasks (preemption). A
//     framework with CAPABILITY_REVOCABLE_RESOURCES may be offered
//     revocable resources (Offer.revocable) for roles below the top
//     priority band; its tasks on them are revocable and may be killed
//     (KILLED, reason PREEMPTED) for such demand.
//   - Rescind: an offer was withdrawn (expired, agent lost).
//   - Update: a task's status. Updates are acknowledged automatically after
//     Update returns (Config.DisableAutoAck turns that off; unacknowledged
//     updates are resent by the master). Updates without a uuid answer a
//     reconciliation.
//   - Failure: an agent was lost; its tasks' updates follow.
//   - Error: the subscription ended for good (torn down, replaced by another
//     instance of the scheduler); Run returns.
//
// Optionally, implement InverseOfferScheduler too: InverseOffers hears an
// operator's drain of an agent the framework has tasks on (the agent, what
// the tasks hold, the deadline). Answer with Driver.AcceptInverseOffer or
// Driver.DeclineInverseOffer, move the tasks elsewhere if you can; at the
// deadline the rest are killed (KILLING, then KILLED, reason DRAINED).
//
// A Scheduler method may call the Driver; the next event is delivered after
// it returns, so the Scheduler sees a consistent order without locks of its
// own. The Driver may also be used from other goroutines; calls made from
// different goroutines at once commit in no set order, so a scheduler that
// suppresses and revives from goroutines should send those from one of them,
// one at a time (a Suppress sent before a Revive can otherwise commit after
// it and leave the framework suppressed with work to place; see
// devcluster/e2e.go's offerControl).
//
// # What the SDK does for you
//
//   - Leader discovery: Config.Masters may name any masters. A follower
//     answers Unavailable with the leader's address (a LeaderRedirect error
//     detail and the Agora-Leader header); the SDK follows it, for the
//     subscription and for every call, and passes over a master that does
//     not answer in time for the others. This is package rpc/client, which
//     the CLI and the agent use too.
//   - Reconnection: when the stream ends (leader failover, network error,
//     no event for 5 heartbeat intervals) the SDK resubscribes with the same
//     framework id, with exponential backoff between MinBackoff and
//     MaxBackoff. Offers made before a master failover stay valid.
//   - Implicit reconciliation after every (re)subscription: the latest state
//     of every non-terminal task arrives as Update events.
//   - Batched updates: the SDK asks masters for status updates several to
//     an event (SubscribeRequest.batched_updates) and calls Scheduler.Update
//     for each, in order; and it declines gzip unless Config.Gzip is set.
//   - Calls made while the framework is resubscribing wait for it; calls
//     answered Unavailable (a leader change) are retried within rpc/client's
//     bounds (5s an attempt, 30s a call). Accept, Decline and Teardown are
//     not retried once they may have been applied (no answer after being
//     sent): they fail with rpc/client's ErrOutcomeUnknown, and the
//     framework learns the outcome from its updates and offers.
//
// Run returns nil when its context ends, leaving the framework registered:
// its tasks keep running until the failover timeout
// (FrameworkInfo.FailoverTimeoutSeconds) unless a scheduler resubscribes
// with its id. Driver.Teardown ends the framework and kills its tasks; Run
// then returns ErrTornDown.
//
// Package frameworktest has a fake master to unit-test a Scheduler through
// this SDK without a cluster.
package framework
