package e2e

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"example.com/app/internal/testbin"
)

// BenchmarkStartToReady starts each binary and reports how long it takes
// from exec to /readiness answering 200, and its resident memory once idle.
// Targets: ≤ 35 ms to ready, ≤ 8 MiB idle RSS.
func BenchmarkStartToReady(b *testing.B) {
	for _, name := range []string{"auth", "hello", "monolith"} {
		b.Run(name, func(b *testing.B) {
			var total time.Duration
			var rss, anon float64
			n := 0
			for b.Loop() {
				ready, r, a := startIdle(b, name)
				total += ready
				rss += r
				anon += a
				n++
			}
			b.ReportMetric(float64(total.Microseconds())/1000/float64(n), "ms-to-ready")
			b.ReportMetric(rss/float64(n), "idle-RSS-MiB")
			b.ReportMetric(anon/float64(n), "idle-anon-MiB")
		})
	}
}

// startIdle starts the binary name and returns how long it took from exec
// to /readiness answering 200, and its resident memory and the anonymous
// part of it once idle for half a second; then stops it. Only the start is
// timed.
func startIdle(b *testing.B, name string) (ready time.Duration, rss, anon float64) {
	p := testbin.Start(b, bins[name], envFor(name))
	ready = p.WaitReady(b)
	b.StopTimer()
	defer b.StartTimer()
	time.Sleep(500 * time.Millisecond) // idle
	rss, anon, _ = memory(b, p.PID())
	p.Signal(b, 15)
	p.Wait(b, 10*time.Second)
	return ready, rss, anon
}

// memory returns a process's resident memory, the anonymous part of it
// (heap and stacks, as opposed to the binary's mapped pages) and its peak
// resident memory so far, in MiB.
func memory(b *testing.B, pid int) (rss, anon, peak float64) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		switch k {
		case "VmRSS":
			rss = kb / 1024
		case "RssAnon":
			anon = kb / 1024
		case "VmHWM":
			peak = kb / 1024
		}
	}
	return rss, anon, peak
}
