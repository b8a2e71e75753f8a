// Command etcd is the etcd server, built from the Go module proxy because
// Debian's etcd is too old for current kube-apiserver.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
