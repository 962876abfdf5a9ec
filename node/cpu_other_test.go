//go:build !unix

package node

import "time"

// processCPU is not measured here: cpu-us/msg reads 0.
func processCPU() time.Duration { return 0 }
