// Command kcluster is a multi-call binary for a local Kubernetes control plane: its first
// argument selects etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, or pki.
package main

import (
	"fmt"
	"os"
	"sort"
	"strings"

	_ "time/tzdata" // CronJob time zones, as in the upstream kube-apiserver and controller-manager

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

var commands = map[string]func() int{
	"etcd":                    runEtcd,
	"pki":                     runPKI,
	"kube-apiserver":          func() int { return runCobra(apiserver.NewAPIServerCommand()) },
	"kube-controller-manager": func() int { return runCobra(controllermanager.NewControllerManagerCommand()) },
	"kube-scheduler":          func() int { return runCobra(scheduler.NewSchedulerCommand()) },
	"kubectl":                 runKubectl,
}

func main() {
	if len(os.Args) < 2 || commands[os.Args[1]] == nil {
		names := make([]string, 0, len(commands))
		for name := range commands {
			names = append(names, name)
		}
		sort.Strings(names)
		fmt.Fprintf(os.Stderr, "usage: kcluster {%s} [args...]\n", strings.Join(names, "|"))
		os.Exit(2)
	}
	run := commands[os.Args[1]]
	// Each upstream command reads os.Args as if it were its own binary (kubectl even inspects
	// os.Args for plugins and verbosity), so drop the selector before handing over.
	os.Args = os.Args[1:]
	os.Exit(run())
}

func runCobra(command *cobra.Command) int {
	return cli.Run(command)
}

func runKubectl() int {
	logs.GlogSetter(kubectlcmd.GetLogVerbosity(os.Args)) //nolint:errcheck
	command := kubectlcmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		kubectlutil.CheckErr(err)
	}
	return 0
}
