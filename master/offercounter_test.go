package master_test

import (
	"context"
	"sync"
	"time"

	"github.com/agora-sched/agora/framework"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// offerCounter is a framework that launches one long task ("keep") on
// its first offer and declines every later offer for a short while, so
// that offers keep coming; it counts them.
type offerCounter struct {
	mu       sync.Mutex
	fid      string
	offers   int
	launched bool
}

func runOfferCounter(ctx context.Context, masters []string, s *offerCounter) error {
	return framework.Run(ctx, framework.Config{Masters: masters, Logger: testLogger(),
		Info:       &agorav1.FrameworkInfo{Name: "offer-counter", Roles: []string{"*"}, FailoverTimeoutSeconds: 3600},
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 500 * time.Millisecond}, s)
}

func (s *offerCounter) Subscribed(_ framework.Driver, id string, _ bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fid = id
}

func (s *offerCounter) Offers(d framework.Driver, offers []*agorav1.Offer) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	refuse := 0.05
	for _, o := range offers {
		s.mu.Lock()
		s.offers++
		launch := !s.launched
		s.launched = true
		s.mu.Unlock()
		if launch {
			task := framework.Task("keep", o.GetAgentId(), "sleep 600", framework.Scalar("cpus", 0.1), framework.Scalar("mem", 16))
			if err := d.Accept(ctx, []string{o.GetId()}, []*agorav1.Operation{framework.Launch(task)}, &refuse); err != nil {
				s.mu.Lock()
				s.launched = false
				s.mu.Unlock()
			}
			continue
		}
		_ = d.Decline(ctx, []string{o.GetId()}, &refuse)
	}
}

func (s *offerCounter) Rescind(framework.Driver, string)             {}
func (s *offerCounter) Update(framework.Driver, *agorav1.TaskStatus) {}
func (s *offerCounter) Failure(framework.Driver, string)             {}
func (s *offerCounter) Error(framework.Driver, string)               {}
func (s *offerCounter) frameworkID() string                          { s.mu.Lock(); defer s.mu.Unlock(); return s.fid }
func (s *offerCounter) count() int                                   { s.mu.Lock(); defer s.mu.Unlock(); return s.offers }
