package kerneltest

import (
	"os"
	"strconv"
	"time"
)

// SlowdownEnv is the environment variable that stretches the kernel
// tests' deadlines on slow machines: a factor of at least 1 (default 1).
// scripts/kernel-matrix.sh sets 5 in emulated (TCG) guests.
const SlowdownEnv = "EGRESSD_TEST_SLOWDOWN"

// Scale returns d stretched by $EGRESSD_TEST_SLOWDOWN. Use it for every
// deadline a test waits on (never to make a test pass by waiting longer
// on a fast machine: the default factor is 1).
func Scale(d time.Duration) time.Duration {
	f, err := strconv.ParseFloat(os.Getenv(SlowdownEnv), 64)
	if err != nil || f < 1 {
		return d
	}
	return time.Duration(float64(d) * f)
}

// Seconds is Scale for tools that take whole seconds (curl --max-time).
func Seconds(d time.Duration) string {
	return strconv.Itoa(int((Scale(d) + time.Second - 1) / time.Second))
}
