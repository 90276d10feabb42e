// Command coredns is CoreDNS v1.6.2 itself, built from its Go module with its default plugin set, for the upstream lane
// (tests/upstream/test_coredns.py). Upstream's own main package (coredns.go at the tag) is not importable, so this
// file repeats its two steps: register the plugins, run the server.
package main

import (
	_ "github.com/coredns/coredns/core/plugin" // registers every plugin of the release's plugin.cfg
	"github.com/coredns/coredns/coremain"
)

func main() {
	coremain.Run()
}
