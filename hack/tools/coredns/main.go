// CoreDNS with only the plugins a cluster DNS needs. CoreDNS's directive list
// (core/dnsserver/zdirectives.go) names every plugin, in execution order, but caddy runs
// only the directives a Corefile uses, and a directive's setup exists only if its plugin
// package is imported here (each registers itself in init). Unimported plugins are harmless;
// a Corefile naming one fails at start-up: "no action found for directive ... (missing a
// plugin?)". No prometheus, no whoami (so always pass -conf).
// To bump: `go get github.com/coredns/coredns@vX && go mod tidy`.
package main

import (
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"

	"github.com/coredns/coredns/coremain"
)

func main() {
	coremain.Run()
}
