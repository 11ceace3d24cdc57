// Package demo is the small framework `agora dev --demo` runs so that a new
// user sees offers and tasks move: it keeps about three short tasks
// (`sleep 3` to `sleep 7`) running, launching a new one whenever one ends,
// and prints every offer it gets and every status update.
//
//	err := demo.Run(ctx, []string{"http://127.0.0.1:7100"}, os.Stdout)
//
// The framework is named "demo" with role "*" and a one minute failover
// timeout; it is torn down when ctx ends.
package demo
