package client

import "github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"

// Policy says when a unary call may be sent again after an attempt failed.
type Policy int

const (
	// RetryIfNotApplied: retry only when the failed attempt certainly
	// changed nothing (never sent, a follower's redirect, Unavailable
	// before proposing). After an unknown outcome the call fails with
	// ErrOutcomeUnknown.
	RetryIfNotApplied Policy = iota
	// RetryAlways: also retry after an unknown outcome (no answer in time
	// after sending, leadership lost in flight): the call is a read, or a
	// write that applied twice leaves the same state and answer as once.
	RetryAlways
)

// String names the policy.
func (p Policy) String() string {
	if p == RetryAlways {
		return "retry-always"
	}
	return "retry-if-not-applied"
}

// policies is the retry policy of every unary procedure; the reasons are
// in doc.go. A procedure not listed gets RetryIfNotApplied.
var policies = map[string]Policy{
	// Reads.
	agorav1connect.OperatorServiceGetStatusProcedure:        RetryAlways,
	agorav1connect.OperatorServiceListRolesProcedure:        RetryAlways,
	agorav1connect.OperatorServiceListPeersProcedure:        RetryAlways,
	agorav1connect.OperatorServiceListAgentsProcedure:       RetryAlways,
	agorav1connect.OperatorServiceListTasksProcedure:        RetryAlways,
	agorav1connect.OperatorServiceListFrameworksProcedure:   RetryAlways,
	agorav1connect.OperatorServiceExplainFrameworkProcedure: RetryAlways,
	agorav1connect.OperatorServiceListOffersProcedure:       RetryAlways,
	agorav1connect.OperatorServiceListReservationsProcedure: RetryAlways,
	agorav1connect.AgentServiceGetAssignmentsProcedure:      RetryAlways,
	agorav1connect.SchedulerServiceReconcileProcedure:       RetryAlways,
	agorav1connect.SchedulerServiceListRecordsProcedure:     RetryAlways,
	agorav1connect.OperatorServiceListServicesProcedure:     RetryAlways,
	agorav1connect.OperatorServiceGetServiceProcedure:       RetryAlways,

	// Writes whose second application changes nothing.
	agorav1connect.OperatorServiceSetRoleProcedure:           RetryIfNotApplied,
	agorav1connect.OperatorServiceSetRolesProcedure:          RetryIfNotApplied,
	agorav1connect.OperatorServiceTeardownFrameworkProcedure: RetryAlways,
	agorav1connect.SchedulerServiceReviveProcedure:           RetryAlways,
	agorav1connect.SchedulerServiceSuppressProcedure:         RetryAlways,
	agorav1connect.SchedulerServiceKillProcedure:             RetryAlways,
	agorav1connect.SchedulerServiceAcknowledgeProcedure:      RetryAlways,
	agorav1connect.SchedulerServiceUpdateFrameworkProcedure:  RetryAlways,
	agorav1connect.SchedulerServiceDemandProcedure:           RetryAlways,
	agorav1connect.AgentServiceRegisterAgentProcedure:        RetryAlways,
	agorav1connect.AgentServiceUpdateStatusProcedure:         RetryAlways,
	agorav1connect.OperatorServiceScaleServiceProcedure:      RetryIfNotApplied,
	agorav1connect.OperatorServiceUpdateServiceProcedure:     RetryIfNotApplied,
	agorav1connect.AgentServiceStopAgentProcedure:            RetryAlways,

	// Writes whose second application answers differently.
	agorav1connect.OperatorServiceDeleteRoleProcedure:        RetryIfNotApplied,
	agorav1connect.OperatorServiceRemovePeerProcedure:        RetryIfNotApplied,
	agorav1connect.SchedulerServiceAcceptProcedure:           RetryIfNotApplied,
	agorav1connect.SchedulerServiceDeclineProcedure:          RetryIfNotApplied,
	agorav1connect.SchedulerServiceTeardownProcedure:         RetryIfNotApplied,
	agorav1connect.SchedulerServicePutRecordProcedure:        RetryIfNotApplied,
	agorav1connect.SchedulerServiceDeleteRecordProcedure:     RetryIfNotApplied,
	agorav1connect.OperatorServiceRunServiceProcedure:        RetryIfNotApplied,
	agorav1connect.OperatorServiceReplaceServicePodProcedure: RetryIfNotApplied,
	agorav1connect.OperatorServiceRemoveServiceProcedure:     RetryIfNotApplied,

	// Drain and maintenance.
	agorav1connect.OperatorServiceDrainAgentProcedure:          RetryIfNotApplied,
	agorav1connect.OperatorServiceUndrainAgentProcedure:        RetryIfNotApplied,
	agorav1connect.SchedulerServiceAnswerInverseOfferProcedure: RetryAlways,
	// Keyring queries: installing, using or removing a key twice leaves
	// every keyring as once; listing is a read.
	agorav1connect.OperatorServiceGossipKeyringProcedure: RetryAlways,
	// Online membership: reads, and configuration changes whose second
	// attempt answers differently (AlreadyExists, NotFound).
	agorav1connect.OperatorServiceRaftHealthProcedure:      RetryAlways,
	agorav1connect.OperatorServiceRaftServerStatsProcedure: RetryAlways,
	agorav1connect.OperatorServiceAddPeerProcedure:         RetryIfNotApplied,
	agorav1connect.OperatorServiceTransferLeaderProcedure:  RetryIfNotApplied,
}

// PolicyOf returns the retry policy of a procedure
// ("/agora.v1.OperatorService/SetRole").
func PolicyOf(procedure string) Policy {
	return policies[procedure]
}
