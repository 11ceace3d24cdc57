package framework

import (
	"context"
	"fmt"

	"connectrpc.com/connect"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
)

// driver implements Driver over a runner.
type driver struct{ r *runner }

var _ Driver = (*driver)(nil)

// FrameworkID implements Driver.
func (d *driver) FrameworkID() string { return d.r.frameworkID() }

// callTarget waits until the framework is subscribed and returns the
// identity to put in a call.
func (r *runner) callTarget(ctx context.Context) (callSite, error) {
	for {
		r.mu.Lock()
		connected, ready, sess := r.connected, r.ready, r.sess
		fc := &agorav1.FrameworkCall{FrameworkId: r.info.GetId(), StreamToken: r.token}
		r.mu.Unlock()
		if connected {
			return callSite{fc: fc, sess: sess}, nil
		}
		select {
		case <-ready:
		case <-r.done:
			return callSite{}, ErrStopped
		case <-r.stopping.Done():
			return callSite{}, ErrStopped
		case <-ctx.Done():
			return callSite{}, fmt.Errorf("waiting for subscription: %w", ctx.Err())
		}
	}
}

// callSite is what one attempt of a call needs.
type callSite struct {
	fc   *agorav1.FrameworkCall
	sess context.Context // done when the subscription's master hangs
}

// tokenReplaced reports whether tok is no longer the live stream token (the
// framework resubscribed, or is resubscribing).
func (r *runner) tokenReplaced(tok string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.connected || r.token != tok
}

// call runs one unary call at the leader. rpc/client follows redirects,
// passes over masters that do not answer and retries as the call's retry
// policy allows; call adds waiting for the subscription and retrying a call
// that raced with a resubscription.
func (r *runner) call(ctx context.Context, name string, fn func(context.Context, agorav1connect.SchedulerServiceClient, *agorav1.FrameworkCall) error) error {
	for attempt := 1; ; attempt++ {
		site, err := r.callTarget(ctx)
		if err != nil {
			return fmt.Errorf("framework: %s: %w", name, err)
		}
		// An attempt ends with the subscription it belongs to: a master
		// that stopped answering (missed heartbeats) must not hold a
		// Scheduler method, and with it the event loop, forever.
		actx, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(site.sess, cancel)
		stopRun := context.AfterFunc(r.stopping, cancel)
		err = fn(actx, r.c.Scheduler, site.fc)
		stop()
		stopRun()
		cancel()
		if err == nil {
			return nil
		}
		if r.stopping.Err() != nil {
			return fmt.Errorf("framework: %s: %w (%w)", name, ErrStopped, err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("framework: %s: %w", name, err)
		}
		if site.sess.Err() != nil {
			return fmt.Errorf("framework: %s: %w", name, connect.NewError(connect.CodeUnavailable,
				fmt.Errorf("master %s stopped answering during the call; offers stay valid and are sent again after resubscribing: %w", r.c.Target(), err)))
		}
		// A call that raced with a resubscription carried the replaced
		// stream's token; try again with the new one.
		if connect.CodeOf(err) == connect.CodeUnavailable || !r.tokenReplaced(site.fc.GetStreamToken()) || attempt >= callAttempts {
			return fmt.Errorf("framework: %s: %w", name, err)
		}
	}
}

// Accept implements Driver.
func (d *driver) Accept(ctx context.Context, offerIDs []string, ops []*agorav1.Operation, refuseSeconds *float64) error {
	return d.r.call(ctx, "accept", func(ctx context.Context, c agorav1connect.SchedulerServiceClient, fc *agorav1.FrameworkCall) error {
		_, err := c.Accept(ctx, connect.NewRequest(&agorav1.AcceptRequest{
			Call: fc, OfferIds: offerIDs, Operations: ops, RefuseSeconds: refuseSeconds,
		}))
		return err
	})
}

// Decline implements Driver.
func (d *driver) Decline(ctx context.Context, offerIDs []string, refuseSeconds *float64) error {
	return d.r.call(ctx, "decline", func(ctx context.Context, c agorav1connect.SchedulerServiceClient, fc *agorav1.FrameworkCall) error {
		_, err := c.Decline(ctx, connect.NewRequest(&agorav1.DeclineRequest{
			Call: fc, OfferIds: offerIDs, RefuseSeconds: refuseSeconds,
		}))
		return err
	})
}

// Kill implements Driver.
func (d *driver) Kill(ctx context.Context, taskID, agentID string) error {
	return d.r.call(ctx, "kill", func(ctx context.Context, c agorav1connect.SchedulerServiceClient, fc *agorav1.FrameworkCall) error {
		_, err := c.Kill(ctx, connect.NewRequest(&agorav1.KillRequest{Call: fc, TaskId: taskID, AgentId: agentID}))
		return err
	})
}

// Acknowledge implements Driver.
func (d *driver) Acknowledge(ctx context.Context, st *agorav1.TaskStatus) error {
	return d.r.call(ctx, "acknowledge", func(ctx context.Context, c agorav1connect.SchedulerServiceClient, fc *agorav1.FrameworkCall) error {
		_, err := c.Acknowledge(ctx, connect.NewRequest(&agorav1.AcknowledgeRequest{
			Call: fc, AgentId: st.GetAgentId(), TaskId: st.GetTaskId(), Uuid: st.GetUuid(),
		}))
		return err
	})
}

// Reconcile implements Driver.
func (d *driver) Reconcile(ctx context.Context, tasks []*agorav1.ReconcileTask) ([]*agorav1.TaskStatus, error) {
	var out []*agorav1.TaskStatus
	err := d.r.call(ctx, "reconcile", func(ctx context.Context, c agorav1connect.SchedulerServiceClient, fc *agorav1.FrameworkCall) error {
		res, err := c.Reconcile(ctx, connect.NewRequest(&agorav1.ReconcileRequest{Call: fc, Tasks: tasks}))
		if err != nil {
			return err
		}
		out = res.Msg.GetStatuses()
		return nil
	})
	return out, err
}

// Revive implements Driver.
func (d *driver) Revive(ctx context.Context, roles ...string) error {
	return d.r.call(ctx, "revive", func(ctx context.Context, c agorav1connect.SchedulerServiceClient, fc *agorav1.FrameworkCall) error {
		_, err := c.Revive(ctx, connect.NewRequest(&agorav1.ReviveRequest{Call: fc, Roles: roles}))
		return err
	})
}

// Suppress implements Driver.
func (d *driver) Suppress(ctx context.Context, roles ...string) error {
	return d.r.call(ctx, "suppress", func(ctx context.Context, c agorav1connect.SchedulerServiceClient, fc *agorav1.FrameworkCall) error {
		_, err := c.Suppress(ctx, connect.NewRequest(&agorav1.SuppressRequest{Call: fc, Roles: roles}))
		return err
	})
}

// Demand implements Driver.
func (d *driver) Demand(ctx context.Context, demands ...*agorav1.Demand) error {
	return d.r.call(ctx, "demand", func(ctx context.Context, c agorav1connect.SchedulerServiceClient, fc *agorav1.FrameworkCall) error {
		_, err := c.Demand(ctx, connect.NewRequest(&agorav1.DemandRequest{Call: fc, Demands: demands}))
		return err
	})
}

// Teardown implements Driver. On success Run returns ErrTornDown.
func (d *driver) Teardown(ctx context.Context) error {
	err := d.r.call(ctx, "teardown", func(ctx context.Context, c agorav1connect.SchedulerServiceClient, fc *agorav1.FrameworkCall) error {
		_, err := c.Teardown(ctx, connect.NewRequest(&agorav1.TeardownRequest{Call: fc}))
		return err
	})
	if err == nil {
		d.r.markTornDown()
	}
	return err
}

// PutRecord implements Driver.
func (d *driver) PutRecord(ctx context.Context, key string, value []byte, expectedVersion uint64) (uint64, error) {
	var v uint64
	err := d.r.call(ctx, "put-record", func(ctx context.Context, c agorav1connect.SchedulerServiceClient, fc *agorav1.FrameworkCall) error {
		res, err := c.PutRecord(ctx, connect.NewRequest(&agorav1.PutRecordRequest{Call: fc, Key: key, Value: value, ExpectedVersion: expectedVersion}))
		if err != nil {
			return err
		}
		v = res.Msg.GetVersion()
		return nil
	})
	return v, err
}

// DeleteRecord implements Driver.
func (d *driver) DeleteRecord(ctx context.Context, key string, expectedVersion uint64) error {
	return d.r.call(ctx, "delete-record", func(ctx context.Context, c agorav1connect.SchedulerServiceClient, fc *agorav1.FrameworkCall) error {
		_, err := c.DeleteRecord(ctx, connect.NewRequest(&agorav1.DeleteRecordRequest{Call: fc, Key: key, ExpectedVersion: expectedVersion}))
		return err
	})
}

// ListRecords implements Driver.
func (d *driver) ListRecords(ctx context.Context, prefix string) ([]*agorav1.FrameworkRecord, error) {
	var out []*agorav1.FrameworkRecord
	err := d.r.call(ctx, "list-records", func(ctx context.Context, c agorav1connect.SchedulerServiceClient, fc *agorav1.FrameworkCall) error {
		res, err := c.ListRecords(ctx, connect.NewRequest(&agorav1.ListRecordsRequest{Call: fc, Prefix: prefix}))
		if err != nil {
			return err
		}
		out = res.Msg.GetRecords()
		return nil
	})
	return out, err
}

// AcceptInverseOffer implements Driver.
func (d *driver) AcceptInverseOffer(ctx context.Context, agentID string) error {
	return d.answerInverseOffer(ctx, agentID, true)
}

// DeclineInverseOffer implements Driver.
func (d *driver) DeclineInverseOffer(ctx context.Context, agentID string) error {
	return d.answerInverseOffer(ctx, agentID, false)
}

func (d *driver) answerInverseOffer(ctx context.Context, agentID string, accept bool) error {
	return d.r.call(ctx, "answer inverse offer", func(ctx context.Context, c agorav1connect.SchedulerServiceClient, fc *agorav1.FrameworkCall) error {
		_, err := c.AnswerInverseOffer(ctx, connect.NewRequest(&agorav1.AnswerInverseOfferRequest{Call: fc, AgentId: agentID, Accept: accept}))
		return err
	})
}
