// Package resourcepb converts between the wire form of resources
// (agorav1.Resource, one message per name and role) and package resources,
// grouping them into Pools keyed by reservation role ("" is unreserved).
//
//	pools, err := resourcepb.FromProto(task.Resources) // validates: InvalidArgument on error
//	if !free.Contains(pools) { ... }
//	wire := pools.ToProto() // deterministic: roles sorted ("" first), names sorted
//
// Pools values are never modified in place by this package: Add, Subtract
// and Clone return fresh maps, so Pools taken from an fsm snapshot may be
// shared between goroutines.
package resourcepb
