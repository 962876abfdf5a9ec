// Package bench is pushbench's library: the systems it measures (a
// pushring node, plain MQTT brokers it starts itself), the scenarios, and
// the report. It is a client only: it talks to servers over HTTP and MQTT
// and imports no server package: its MQTT client is mqtt/mqttc, on the
// shared codec mqtt/packet; --tls takes only the throwaway CA maker of
// internal/certs, and the chaos scenario only internal/natsauth's NATS
// authorization block for its NATS servers (the nodes' permissions).
package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// ProcSample is one reading of /proc/<pid>.
type ProcSample struct {
	CPUSeconds float64 // user + system
	RSSKiB     int64
	HWMKiB     int64 // peak RSS
	// Read and write system calls so far, all threads (/proc/<pid>/io;
	// 0 where the kernel does not expose it). A burst's cost moves with
	// how many messages each socket read or write carries, and these
	// counts show it.
	SyscR, SyscW uint64
}

const clockTicks = 100 // USER_HZ on Linux

// ReadProc reads /proc/<pid>/stat and /proc/<pid>/status ("self" for pid 0).
func ReadProc(pid int) (ProcSample, error) {
	dir := "/proc/self"
	if pid > 0 {
		dir = "/proc/" + strconv.Itoa(pid)
	}
	var s ProcSample
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return s, err
	}
	// Fields after the command name (which may hold spaces) start at ") ".
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, fmt.Errorf("%s/stat: unexpected format", dir)
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return s, fmt.Errorf("%s/stat: too few fields", dir)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	s.CPUSeconds = float64(ut+st) / clockTicks
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return s, err
	}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			s.RSSKiB = kib(v)
		} else if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			s.HWMKiB = kib(v)
		}
	}
	if io, err := os.ReadFile(dir + "/io"); err == nil {
		for line := range strings.Lines(string(io)) {
			k, v, _ := strings.Cut(strings.TrimSpace(line), ": ")
			switch k {
			case "syscr":
				s.SyscR, _ = strconv.ParseUint(v, 10, 64)
			case "syscw":
				s.SyscW, _ = strconv.ParseUint(v, 10, 64)
			}
		}
	}
	return s, nil
}

func kib(v string) int64 {
	n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
	return n
}

// Machine describes the host for the JSON output.
type Machine struct {
	Cores     int    `json:"cores"`
	Model     string `json:"model"`
	Kernel    string `json:"kernel"`
	MemoryKiB int64  `json:"memory_kib"`
	GoVersion string `json:"go_version"`
}

// DescribeMachine reads /proc/cpuinfo, /proc/meminfo and the kernel release.
func DescribeMachine() Machine {
	m := Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				m.MemoryKiB = kib(v)
			}
		}
	}
	return m
}
