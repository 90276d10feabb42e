// Command etcd is the etcd server the k8s.io/kubernetes module above requires (go.etcd.io/etcd/server/v3 at the
// version its go.mod pins), the storage kube-apiserver needs in the upstream lane. etcd's own main package lives in
// another module (go.etcd.io/etcd/v3); this file makes the same call it does.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
