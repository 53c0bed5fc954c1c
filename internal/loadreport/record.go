package loadreport

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
)

// Record is one line of a benchmark's results file (JSON lines): what one target did
// under one workload, or why it was not measured.
type Record struct {
	Target   string  `json:"target"`          // "ceiling", "L0" … "L10"
	Name     string  `json:"name,omitempty"`  // e.g. "Read Cache"
	Workload string  `json:"workload"`        // one of Workloads' IDs
	Shape    string  `json:"shape,omitempty"` // the requests sent, e.g. "GET /read/k{key:100000}"
	Note     string  `json:"note,omitempty"`  // about the target, shown once under the tables
	Skipped  string  `json:"skipped,omitempty"`
	Result   *Result `json:"result,omitempty"` // nil when Skipped
}

// AppendRecord adds rec as one line to the results file at path.
func AppendRecord(path string, rec Record) error {
	if rec.Target == "" || rec.Workload == "" {
		return fmt.Errorf("record: target and workload are required")
	}
	if _, ok := workloadByID(rec.Workload); !ok {
		return fmt.Errorf("record: unknown workload %q", rec.Workload)
	}
	if (rec.Result == nil) == (rec.Skipped == "") {
		return fmt.Errorf("record %s %s: want either a result or a reason it was skipped", rec.Target, rec.Workload)
	}
	line, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadRecords reads a results file written by AppendRecord.
func ReadRecords(r io.Reader) ([]Record, error) {
	var out []Record
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for n := 1; sc.Scan(); n++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var rec Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return nil, fmt.Errorf("results line %d: %w", n, err)
		}
		if _, ok := workloadByID(rec.Workload); !ok {
			return nil, fmt.Errorf("results line %d: unknown workload %q", n, rec.Workload)
		}
		out = append(out, rec)
	}
	return out, sc.Err()
}
