// Command kube-apiserver is Kubernetes v1.36.1's API server, built from the k8s.io/kubernetes module for the upstream
// lane (tests/upstream/test_kubeapi.py checks lab/cluster.py's client against it). Upstream's main package
// (cmd/kube-apiserver/apiserver.go at the tag) is not importable, so this file repeats its two steps: build the
// command, run it.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
