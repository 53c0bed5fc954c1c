// Package drill is the workload of a fault drill against a running layer, over its HTTP
// API: writers of distinct keys and readers of one hot key, in named phases ("before",
// "fault", "after"), with per-phase statistics, the set of acknowledged writes, and a
// read-back that finds the acknowledged writes a layer lost. The layers' fault tests and
// cmd/drill use it; injecting and healing the fault is theirs. Targets must be loopback.
//
//	run := drill.Start(ctx, drill.Workload{BaseURL: "http://127.0.0.1:8002", Writers: 8, Readers: 8})
//	… let it run; run.Phase(drill.PhaseFault); inject; … heal; run.Phase(drill.PhaseAfter); …
//	res := run.Stop()
//	lost, err := res.ReadBack(ctx, "http://127.0.0.1:8002", nil)
//	res.Print(os.Stdout)
package drill

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dblayers/dblayers/internal/loadgen"
)

// The phases of a drill. A run starts in PhaseBefore.
const (
	PhaseBefore = "before"
	PhaseFault  = "fault"
	PhaseAfter  = "after"
)

// Bounds and defaults of a Workload.
const (
	MaxWorkers            = 1000       // writers + readers
	MaxRequestsLimit      = 10_000_000 // the largest MaxRequests accepted
	DefaultMaxRequests    = 1_000_000
	DefaultRequestTimeout = 10 * time.Second
	DefaultRecoverRun     = 20
	DefaultReadBackSettle = 10 * time.Second
)

// A Workload is what a drill sends. Zero fields take the defaults given.
type Workload struct {
	BaseURL string // the layer, e.g. http://127.0.0.1:8002 (loopback only)
	Writers int    // goroutines writing distinct keys, one request in flight each
	Readers int    // goroutines reading HotKey, one request in flight each

	// HotKey is the key the readers read (default KeyPrefix+"-hot"); Start writes it once
	// before the readers begin. KeyPrefix starts every key of the run (default "drill-"
	// and 8 random hex digits, so that runs do not share keys): writer w writes
	// KeyPrefix-wW-0, KeyPrefix-wW-1 … (Key), each with the value ValueOf(key).
	HotKey    string
	KeyPrefix string

	RequestTimeout time.Duration // per request, connecting to last body byte; default 10s
	Header         http.Header   // sent with every request, e.g. X-API-Key (L10), X-Region (L9)

	// MaxRequests bounds the requests of the run (default 1,000,000, at most
	// MaxRequestsLimit): past it the workers stop on their own and the result says Capped.
	MaxRequests int
	// RecoverRun is N of a phase's time to recover (PhaseStats.Recovery); default 20.
	RecoverRun int
	// ReadBackSettle is how long ReadBack keeps retrying a key that reads as missing or
	// wrong, or whose read fails, before calling it lost or unreadable: layers that apply
	// writes asynchronously (L6's worker, L7's projector) need a moment. Default 10s.
	ReadBackSettle time.Duration
}

func (w Workload) withDefaults() Workload {
	w.BaseURL = strings.TrimRight(w.BaseURL, "/")
	if w.KeyPrefix == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		w.KeyPrefix = "drill-" + hex.EncodeToString(b[:])
	}
	if w.HotKey == "" {
		w.HotKey = w.KeyPrefix + "-hot"
	}
	if w.RequestTimeout == 0 {
		w.RequestTimeout = DefaultRequestTimeout
	}
	if w.MaxRequests == 0 {
		w.MaxRequests = DefaultMaxRequests
	}
	if w.RecoverRun == 0 {
		w.RecoverRun = DefaultRecoverRun
	}
	if w.ReadBackSettle == 0 {
		w.ReadBackSettle = DefaultReadBackSettle
	}
	return w
}

// Validate checks w's bounds and that BaseURL is a loopback http(s) URL.
func (w Workload) Validate() error {
	w = w.withDefaults()
	switch {
	case w.Writers < 0 || w.Readers < 0 || w.Writers+w.Readers == 0 || w.Writers+w.Readers > MaxWorkers:
		return fmt.Errorf("writers %d, readers %d: want at least one, at most %d in all", w.Writers, w.Readers, MaxWorkers)
	case w.RequestTimeout < 0:
		return errors.New("request timeout must be positive")
	case w.MaxRequests < 0 || w.MaxRequests > MaxRequestsLimit:
		return fmt.Errorf("max requests %d out of range 1…%d", w.MaxRequests, MaxRequestsLimit)
	case w.RecoverRun < 0:
		return errors.New("recover run must be positive")
	case w.ReadBackSettle < 0:
		return errors.New("read-back settle time must be positive")
	case strings.ContainsAny(w.KeyPrefix+w.HotKey, "/\x00\r\n"):
		return errors.New("keys must not contain '/' or control characters")
	}
	return checkBaseURL(w.BaseURL)
}

func checkBaseURL(base string) error {
	u, err := url.Parse(base)
	if err != nil {
		return fmt.Errorf("base URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" {
		return fmt.Errorf("base URL %q: want http://host:port", base)
	}
	return loadgen.CheckLoopback(u.Hostname())
}

// Key is the i-th key of writer w.
func (w Workload) Key(writer, i int) string { return fmt.Sprintf("%s-w%d-%d", w.KeyPrefix, writer, i) }

// ValueOf is the value a drill writes under key.
func ValueOf(key string) string { return "value-of-" + key }

// A Run is a workload under way.
type Run struct {
	w       Workload
	client  *http.Client
	ctx     context.Context // the caller's: its end abandons requests in flight
	stopped chan struct{}   // closed by Stop: no new requests
	wg      sync.WaitGroup
	sent    atomic.Int64
	capped  atomic.Bool
	seed    string // outcome of the hot key's write, "" when acknowledged
	current atomic.Pointer[phase]

	mu     sync.Mutex
	phases []*phase // in order; the last is current

	acked    [][]int // per writer, the i of its acknowledged keys; the writer's own until Stop
	stopOnce sync.Once
	result   *Result
}

// Start begins w's writers and readers in PhaseBefore. They run until Stop, the end of
// ctx, or w.MaxRequests requests. It panics if w.Validate fails: validate a workload from
// user input first.
func Start(ctx context.Context, w Workload) *Run {
	if err := w.Validate(); err != nil {
		panic("drill.Start: " + err.Error())
	}
	w = w.withDefaults()
	r := &Run{
		w:       w,
		client:  newClient(w.Writers + w.Readers),
		ctx:     ctx,
		stopped: make(chan struct{}),
		acked:   make([][]int, w.Writers),
	}
	r.Phase(PhaseBefore)
	if w.Readers > 0 {
		a := r.write(w.HotKey)
		if !a.ok {
			r.seed = a.outcome
		}
	}
	for id := range w.Writers {
		r.wg.Go(func() {
			n := 0
			r.loop(func() {
				r.writeKey(id, n)
				n++
			})
		})
	}
	for range w.Readers {
		r.wg.Go(func() { r.loop(r.reader) })
	}
	return r
}

func newClient(conns int) *http.Client {
	dialer := &net.Dialer{KeepAlive: 30 * time.Second, Control: loadgen.DialLoopbackOnly}
	return &http.Client{Transport: &http.Transport{
		Proxy:               nil, // never a proxy: the target is this machine
		DialContext:         dialer.DialContext,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     90 * time.Second,
	}}
}

// Phase attributes the requests sent from now on to a new phase called name (phases are
// kept in order; a name may come back). The same name as the current phase's is a no-op.
func (r *Run) Phase(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if n := len(r.phases); n > 0 {
		if r.phases[n-1].name == name {
			return
		}
		r.phases[n-1].end = now
	}
	p := newPhase(name, now, r.w.RecoverRun)
	r.phases = append(r.phases, p)
	r.current.Store(p)
}

// Answers returns how many requests sent in the current phase have been answered so far,
// and how many of them successfully: for a test to poll until a phase has enough.
func (r *Run) Answers() (answered, ok int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.phases[len(r.phases)-1]
	for _, k := range p.kinds {
		answered += k.Count()
		ok += k.OK
	}
	return answered, ok
}

// Stop sends no new request, waits for those in flight (each is bounded by the request
// timeout) and returns the result. Further calls return the same result.
func (r *Run) Stop() *Result {
	r.stopOnce.Do(func() {
		close(r.stopped)
		end := time.Now()
		r.wg.Wait()
		r.client.CloseIdleConnections()
		r.result = r.collect(end)
	})
	return r.result
}

// loop calls send until the run stops or its request budget is spent.
func (r *Run) loop(send func()) {
	for {
		select {
		case <-r.stopped:
			return
		case <-r.ctx.Done():
			return
		default:
		}
		if r.sent.Add(1) > int64(r.w.MaxRequests) {
			r.capped.Store(true)
			return
		}
		send()
	}
}

// writeKey writes writer id's n-th key.
func (r *Run) writeKey(id, n int) {
	p := r.current.Load()
	a := r.write(r.w.Key(id, n))
	if a.ok {
		r.acked[id] = append(r.acked[id], n)
	}
	r.record(p, kindWrite, a, time.Now())
}

// answer is the outcome of one request.
type answer struct {
	outcome string // "200", "503", "200 not found", "timeout", "connection refused" …
	ok      bool
	elapsed time.Duration
	abandon bool // the run's context ended: not counted
}

// Outcomes other than a status code alone.
const (
	outcomeUnacknowledged = "200 unacknowledged" // a write answered 200 without success true
	outcomeNotFound       = "200 not found"
	outcomeWrongValue     = "200 wrong value"
	outcomeBadBody        = "200 unreadable body"
)

// write sends POST /write of key with ValueOf(key).
func (r *Run) write(key string) answer {
	body, _ := json.Marshal(map[string]string{"key": key, "value": ValueOf(key)})
	return do(r.ctx, r.client, r.w, http.MethodPost, "/write", body, func(status int, s success) (string, bool) {
		if status == http.StatusOK && !s.Success {
			return outcomeUnacknowledged, false
		}
		return strconv.Itoa(status), status == http.StatusOK
	})
}

// read sends GET /read/{key} and checks the value against ValueOf(key).
func read(ctx context.Context, c *http.Client, w Workload, key string) answer {
	return do(ctx, c, w, http.MethodGet, "/read/"+url.PathEscape(key), nil, func(status int, s success) (string, bool) {
		switch {
		case status != http.StatusOK:
			return strconv.Itoa(status), false
		case !s.Success:
			return outcomeNotFound, false
		case s.Value == nil || *s.Value != ValueOf(key):
			return outcomeWrongValue, false
		}
		return "200", true
	})
}

func (r *Run) reader() {
	p := r.current.Load()
	a := read(r.ctx, r.client, r.w, r.w.HotKey)
	r.record(p, kindRead, a, time.Now())
}

// success is the part of a layer's answer a drill checks.
type success struct {
	Success bool    `json:"success"`
	Value   *string `json:"value"`
}

// maxBody bounds the answer a drill reads.
const maxBody = 1 << 20

// do sends one request with w's header and timeout; judge names the outcome of a
// response from its status and, for a 200, its body (an unreadable 200 body is an
// outcome of its own). A request cut short by the end of ctx is abandoned.
func do(ctx context.Context, c *http.Client, w Workload, method, path string, body []byte,
	judge func(status int, s success) (string, bool)) answer {
	reqCtx, cancel := context.WithTimeout(ctx, w.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, method, w.BaseURL+path, bytes.NewReader(body))
	if err != nil {
		return answer{outcome: loadgen.ErrorKind(err)}
	}
	for name, values := range w.Header {
		req.Header[name] = values
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := c.Do(req)
	var s success
	var bodyErr error
	if err == nil {
		var b []byte
		b, err = io.ReadAll(io.LimitReader(resp.Body, maxBody))
		resp.Body.Close()
		if err != nil {
			err = fmt.Errorf("reading body: %w", err)
		} else if resp.StatusCode == http.StatusOK {
			bodyErr = json.Unmarshal(b, &s)
		}
	}
	a := answer{elapsed: time.Since(start)}
	switch {
	case err != nil && ctx.Err() != nil:
		a.abandon, a.outcome = true, "abandoned"
	case err != nil:
		a.outcome = loadgen.ErrorKind(err)
	case bodyErr != nil:
		a.outcome = outcomeBadBody
	default:
		a.outcome, a.ok = judge(resp.StatusCode, s)
	}
	return a
}
