// Package frameworktest ships an in-memory fake of the master's
// SchedulerService, so a framework's scheduler can be tested through the real
// SDK without a cluster:
//
//	m := frameworktest.NewMaster()
//	defer m.Close()
//	go framework.Run(ctx, framework.Config{Masters: []string{m.URL()}, Info: info}, mySched)
//	m.WaitSubscriptions(ctx, 1)
//	m.Send(frameworktest.OffersEvent(offer))
//	calls, _ := m.WaitCalls(ctx, "Accept", 1)
//
// The fake records every unary call, checks the stream token of each, answers
// Unavailable with a leader redirect while it is not the leader, and can end
// the live stream or stop sending heartbeats to exercise reconnection. It
// holds no offers, tasks or resources: it answers every valid call with
// success.
package frameworktest
