// Package resources owns the resource vocabulary of agora: a bag of named
// scalar, range and set resources with exact arithmetic.
//
// # Kinds
//
//   - Scalars (cpus, mem, disk, gpus, custom names) are stored in milli-units
//     as int64, so 0.1+0.2 is exactly 0.3: "cpus:0.5" is kept as 500 and
//     "mem:1024" as 1024000. Values are rounded to the nearest milli-unit;
//     zero values are dropped, so a Resources never holds a zero scalar.
//   - Ranges (ports) are inclusive uint64 intervals, kept sorted, coalesced and
//     non-overlapping: "ports:[31000-32000,33000-33010]".
//   - Sets (zones, device ids) are sorted unique strings: "zones:{a,b}".
//
// # Text form
//
// Parse reads semicolon-separated NAME:VALUE pairs; String writes the
// canonical form (names sorted, numbers shortest), and Parse(r.String())
// always equals r. Names match [a-z][a-z0-9_.-]* and may appear only once.
//
//	r, err := resources.Parse("cpus:4;mem:8192;ports:[31000-31009]")
//	free, err := r.Subtract(resources.MustParse("cpus:1.5;mem:512"))
//	if errors.Is(err, resources.ErrInsufficient) { ... }
//	ports, ok := free.PickRanges("ports", 2) // 31000, 31001
//
// # Values
//
// Resources is a value type: every operation (Add, Subtract, Clone, ...)
// returns a fresh value and never modifies its inputs, so a Resources taken
// from a snapshot may be shared freely between goroutines as long as nobody
// writes to its maps directly. The zero value is empty and ready to use.
package resources
