// Command istioctl runs istio.io/istio's istioctl root command (ordinary use of the module; no upstream file is
// copied). The lab's upstream lane builds it with version ldflags, see README.md.
package main

import (
	"os"

	"istio.io/istio/istioctl/cmd"
)

func main() {
	if err := cmd.ConfigAndEnvProcessing(); err != nil {
		os.Stderr.WriteString("istioctl: " + err.Error() + "\n")
		os.Exit(cmd.GetExitCode(err))
	}
	if err := cmd.GetRootCmd(os.Args[1:]).Execute(); err != nil {
		os.Exit(cmd.GetExitCode(err))
	}
}
