// Command istioctl runs istio.io/istio's istioctl root command (ordinary use of the module; no upstream file is
// copied). As the 1.30 tags' istioctl/cmd/istioctl/main.go does: ConfigAndEnvProcessing, klog routed through
// cobra's flags, then the root command. The lab's upstream lane builds it with version ldflags, see README.md.
package main

import (
	"os"

	// every client auth plugin, as upstream's main imports them (kubeconfigs of cloud clusters)
	_ "k8s.io/client-go/plugin/pkg/client/auth"

	"istio.io/istio/istioctl/cmd"
	"istio.io/istio/pkg/log"
)

func main() {
	if err := cmd.ConfigAndEnvProcessing(); err != nil {
		os.Stderr.WriteString("istioctl: could not initialize: " + err.Error() + "\n")
		os.Exit(cmd.GetExitCode(err))
	}
	root := cmd.GetRootCmd(os.Args[1:])
	log.EnableKlogWithCobra()
	if err := root.Execute(); err != nil {
		os.Exit(cmd.GetExitCode(err))
	}
}
