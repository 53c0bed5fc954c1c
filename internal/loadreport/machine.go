package loadreport

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Machine describes the computer a benchmark ran on.
type Machine struct {
	CPUs      int    // logical CPUs this process may use
	CPUModel  string // /proc/cpuinfo "model name"
	MemoryGiB float64
	OS        string // /etc/os-release PRETTY_NAME
	Kernel    string
	Go        string // the Go toolchain that built the services and loadgen
}

// ThisMachine reads the machine's description from /proc and /etc (Linux); what it cannot
// read stays empty or zero.
func ThisMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	m.CPUModel = firstField("/proc/cpuinfo", "model name", ":")
	if kb := firstField("/proc/meminfo", "MemTotal", ":"); kb != "" {
		if n, err := strconv.ParseFloat(strings.Fields(kb)[0], 64); err == nil {
			m.MemoryGiB = n / (1024 * 1024)
		}
	}
	m.OS = strings.Trim(firstField("/etc/os-release", "PRETTY_NAME", "="), `"`)
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// String is the machine in one line, e.g. "2 CPUs (Intel Xeon …), 23.4 GiB, Debian 12, Linux 6.1, go1.26".
func (m Machine) String() string {
	parts := []string{fmt.Sprintf("%d CPUs", m.CPUs)}
	if m.CPUModel != "" {
		parts[0] += " (" + m.CPUModel + ")"
	}
	if m.MemoryGiB > 0 {
		parts = append(parts, fmt.Sprintf("%.1f GiB memory", m.MemoryGiB))
	}
	if m.OS != "" {
		parts = append(parts, m.OS)
	}
	if m.Kernel != "" {
		parts = append(parts, "Linux "+m.Kernel)
	}
	return strings.Join(append(parts, m.Go), ", ")
}

// LoadAverage is /proc/loadavg's 1, 5 and 15 minute load averages, or "" off Linux.
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// firstField returns the value of the first line of file that starts with key and sep.
func firstField(file, key, sep string) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), sep)
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
