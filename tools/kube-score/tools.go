//go:build tools

// Package tools pins kube-score, which `make lint` runs on the rendered chart
// (tools/build-kube-score.sh builds it).
package tools

import (
	_ "github.com/zegl/kube-score/cmd/kube-score"
)
