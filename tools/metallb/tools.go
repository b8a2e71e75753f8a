//go:build tools

// Package tools pins MetalLB's controller and speaker, built only to measure
// externalip against them side by side (bench/).
package tools

import (
	_ "go.universe.tf/metallb/controller"
	_ "go.universe.tf/metallb/speaker"
)
