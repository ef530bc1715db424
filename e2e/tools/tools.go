//go:build tools

// Package tools pins the Kubernetes programs and kwok that
// e2e/tools/install.sh builds into .tools/bin/. Nothing imports this package;
// the blank imports keep the modules (and their exact versions) in
// go.mod/go.sum. Helm and etcd have their own modules in helm/ and etcd/.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "sigs.k8s.io/kwok/cmd/kwok"
)
