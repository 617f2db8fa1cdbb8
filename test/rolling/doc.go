// Package rolling tests Orderflow's horizontal scale-out for real: three
// order and three inventory replicas behind an HAProxy process configured
// from deploy/haproxy/haproxy.cfg, with payment, the provider and
// notification beside them (test/stack), all on free ports and fresh
// databases, trusting one Ory Hydra started for the test (pkg/authtest):
// every order is placed by a customer with an access token of its own.
//
// TestRollingRestart (part of `make test`) restarts every replica one by
// one under a steady load and requires zero failed requests and every
// invariant of the fault suite. TestThroughput, behind the `scaling` build
// tag (scripts/test-rolling.sh scaling), measures orders/s and product
// reads/s through HAProxy with one replica of each and with three, side by
// side, for docs/patterns/scaling.md.
package rolling
