package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Bounds on a run: the generator refuses anything larger.
const (
	MaxRequests    = 10_000_000
	MaxDuration    = 10 * time.Minute
	MaxConcurrency = 10_000
)

// A Spec is one kind of request of a run. URL and Body are templates (see Template); the
// URL's scheme and host are not, and the host must be loopback.
type Spec struct {
	Weight int    // share of the requests: Weight / sum of all weights (≥ 1)
	Method string // GET when empty
	URL    string // e.g. http://127.0.0.1:8002/read/k{key:100000}
	Body   string // empty for none
}

// String is the spec as "METHOD URL".
func (s Spec) String() string { return s.method() + " " + s.URL }

func (s Spec) method() string {
	if s.Method == "" {
		return http.MethodGet
	}
	return strings.ToUpper(s.Method)
}

// Config is one run.
type Config struct {
	Specs       []Spec
	Headers     []string      // "Name: value", sent with every request
	ContentType string        // Content-Type of requests with a body unless Headers set one; default application/json
	Concurrency int           // workers, each with at most one request in flight (≥ 1)
	Requests    int           // stop after this many measured requests (request-count mode)
	Duration    time.Duration // stop starting requests after this long (duration mode)
	Warmup      time.Duration // requests sent during this initial period are not measured
	Rate        float64       // total requests per second, warm-up included; 0 = unlimited
	Timeout     time.Duration // per request, connecting and reading the whole body included
}

// Validate checks c's bounds and that every target is loopback.
func (c Config) Validate() error {
	_, err := c.prepare()
	return err
}

// Run sends the configured load and returns what was measured. Ending ctx stops the run
// early (in-flight requests are abandoned and not counted); the result is then marked
// Interrupted.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	targets, err := cfg.prepare()
	if err != nil {
		return nil, err
	}
	transport := newTransport(cfg)
	defer transport.CloseIdleConnections()

	r := &runner{cfg: cfg, targets: targets, transport: transport, ctx: ctx, run: rand.Uint64() >> 33}
	for _, t := range targets {
		r.weights += t.weight
	}
	r.start = time.Now()
	r.measureFrom = r.start.Add(cfg.Warmup)
	if cfg.Duration > 0 {
		r.deadline = r.measureFrom.Add(cfg.Duration)
	}
	r.remaining.Store(int64(cfg.Requests))
	if cfg.Rate > 0 {
		r.pacer = newPacer(r.start, cfg.Rate)
	}

	workers := make([]*worker, cfg.Concurrency)
	var wg sync.WaitGroup
	for i := range workers {
		w := r.newWorker(i)
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop()
		}()
	}
	wg.Wait()
	end := time.Now()
	return r.result(workers, end), nil
}

// target is a Spec ready to send.
type target struct {
	Spec
	weight    int
	method    string
	prefix    string // scheme://host, the fixed part of the URL
	path      Template
	body      Template
	hasBody   bool
	templates *TemplateSet
	fixedURL  *url.URL // the URL when path is static
	header    http.Header
	host      string // a Host header override, if any
	latency   Recorder
}

func (c Config) prepare() ([]*target, error) {
	switch {
	case len(c.Specs) == 0:
		return nil, errors.New("no target URL")
	case c.Concurrency < 1 || c.Concurrency > MaxConcurrency:
		return nil, fmt.Errorf("concurrency %d out of range 1…%d", c.Concurrency, MaxConcurrency)
	case c.Requests > 0 && c.Duration > 0:
		return nil, errors.New("give a request count (-n) or a duration (-z), not both")
	case c.Requests <= 0 && c.Duration <= 0:
		return nil, errors.New("give a request count (-n) or a duration (-z)")
	case c.Requests > MaxRequests:
		return nil, fmt.Errorf("request count %d refused: at most %d", c.Requests, MaxRequests)
	case c.Duration > MaxDuration:
		return nil, fmt.Errorf("duration %v refused: at most %v", c.Duration, MaxDuration)
	case c.Warmup < 0 || c.Warmup > MaxDuration:
		return nil, fmt.Errorf("warm-up %v out of range 0…%v", c.Warmup, MaxDuration)
	case c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0):
		return nil, fmt.Errorf("rate %v: must be a number ≥ 0", c.Rate)
	case c.Timeout <= 0:
		return nil, errors.New("timeout must be positive")
	}
	header := make(http.Header)
	for _, h := range c.Headers {
		name, value, ok := strings.Cut(h, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t\r\n") {
			return nil, fmt.Errorf("header %q: want \"Name: value\"", h)
		}
		header.Add(name, strings.TrimSpace(value))
	}
	targets := make([]*target, len(c.Specs))
	for i, s := range c.Specs {
		t, err := c.prepareSpec(s, header)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s, err)
		}
		targets[i] = t
	}
	return targets, nil
}

func (c Config) prepareSpec(s Spec, header http.Header) (*target, error) {
	if s.Weight < 1 {
		return nil, fmt.Errorf("weight %d: must be ≥ 1", s.Weight)
	}
	t := &target{Spec: s, weight: s.Weight, method: s.method(), hasBody: s.Body != ""}
	if !validMethod(t.method) {
		return nil, fmt.Errorf("bad method %q", s.Method)
	}
	scheme, rest, ok := strings.Cut(s.URL, "://")
	if !ok || (scheme != "http" && scheme != "https") {
		return nil, errors.New("the URL must start with http:// or https://")
	}
	hostEnd := strings.IndexAny(rest, "/?#")
	if hostEnd < 0 {
		hostEnd = len(rest)
	}
	t.prefix = scheme + "://" + rest[:hostEnd]
	path := rest[hostEnd:]
	if path == "" || path[0] != '/' {
		path = "/" + path
	}
	base, err := url.Parse(t.prefix + "/")
	if err != nil {
		return nil, fmt.Errorf("bad URL: %w", err)
	}
	if base.Host == "" || base.User != nil {
		return nil, errors.New("bad URL: want scheme://host[:port]/path")
	}
	if err := CheckLoopback(base.Hostname()); err != nil {
		return nil, err
	}
	if t.templates, err = ParseTemplates(path, s.Body); err != nil {
		return nil, err
	}
	t.path, t.body = t.templates.Templates[0], t.templates.Templates[1]
	// A sample expansion must be a valid URL; a static one is parsed once for all requests.
	var v Values
	t.templates.Draw(&v, 0, rand.New(rand.NewPCG(1, 2)))
	u, err := url.Parse(string(t.path.Append([]byte(t.prefix), &v)))
	if err != nil {
		return nil, fmt.Errorf("bad URL: %w", err)
	}
	if t.path.Static() {
		t.fixedURL = u
	}
	t.header = header.Clone()
	if t.hasBody && t.header.Get("Content-Type") == "" {
		t.header.Set("Content-Type", orDefault(c.ContentType, "application/json"))
	}
	t.host = t.header.Get("Host")
	t.header.Del("Host")
	return t, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range m {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}

func newTransport(cfg Config) *http.Transport {
	dialer := &net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second, Control: DialLoopbackOnly}
	return &http.Transport{
		Proxy:               nil, // never a proxy: the target is this machine
		DialContext:         dialer.DialContext,
		MaxIdleConnsPerHost: cfg.Concurrency, // one kept-alive connection per worker
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true},                  //nolint:gosec // loopback only: self-signed test servers
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only
	}
}

// runner is the state of one run the workers share.
type runner struct {
	cfg         Config
	targets     []*target
	weights     int
	transport   *http.Transport
	ctx         context.Context
	run         uint64 // the {run} value
	start       time.Time
	measureFrom time.Time    // end of the warm-up
	deadline    time.Time    // duration mode: no request starts at or after it
	remaining   atomic.Int64 // request-count mode: measured requests still to start
	seq         atomic.Uint64
	pacer       *pacer
}

// pacer spaces request starts at least 1/rate apart: a request waits for the next free
// slot, and a slot missed because every worker was busy is not made up later. So in any
// run of length T at most rate·T+1 requests start, and a slow target gets a lower rate,
// never a burst.
type pacer struct {
	mu       sync.Mutex
	next     time.Time
	interval time.Duration
}

func newPacer(start time.Time, rate float64) *pacer {
	return &pacer{next: start, interval: time.Duration(math.Ceil(1e9 / rate))}
}

func (p *pacer) slot(now time.Time) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.next
	if t.Before(now) {
		t = now
	}
	p.next = t.Add(p.interval)
	return t
}

// worker sends one request at a time; its counters are its own until the run ends.
type worker struct {
	r      *runner
	id     int
	rng    *rand.Rand
	values Values
	urlBuf []byte
	buf    []byte // response bodies are read into it and dropped
	timer  *time.Timer
	stats  []workerStats // per target
}

type workerStats struct {
	status map[int]uint64
	errors map[string]uint64
}

// maxErrorKinds bounds the distinct error texts a worker keeps; further ones count as "other".
const maxErrorKinds = 16

func (r *runner) newWorker(id int) *worker {
	w := &worker{
		r:      r,
		id:     id,
		rng:    rand.New(rand.NewPCG(rand.Uint64(), uint64(id))),
		buf:    make([]byte, 32<<10),
		stats:  make([]workerStats, len(r.targets)),
		urlBuf: make([]byte, 0, 256),
	}
	for i := range w.stats {
		w.stats[i] = workerStats{status: make(map[int]uint64, 4), errors: make(map[string]uint64)}
	}
	w.values.Run = r.run
	return w
}

func (w *worker) loop() {
	r := w.r
	for r.ctx.Err() == nil {
		now := time.Now()
		if r.pacer != nil {
			at := r.pacer.slot(now)
			if !r.deadline.IsZero() && !at.Before(r.deadline) {
				return
			}
			if !w.sleepUntil(at) {
				return
			}
			now = time.Now()
		}
		if !r.deadline.IsZero() && !now.Before(r.deadline) {
			return
		}
		measured := !now.Before(r.measureFrom)
		if measured && r.cfg.Requests > 0 && r.remaining.Add(-1) < 0 {
			return
		}
		w.send(measured)
	}
}

// sleepUntil waits until t; it returns false if the run was cancelled meanwhile.
func (w *worker) sleepUntil(t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	if w.timer == nil {
		w.timer = time.NewTimer(d)
	} else {
		w.timer.Reset(d)
	}
	select {
	case <-w.timer.C:
		return true
	case <-w.r.ctx.Done():
		return false
	}
}

func (w *worker) pick() int {
	if len(w.r.targets) == 1 {
		return 0
	}
	n := w.rng.IntN(w.r.weights)
	for i, t := range w.r.targets {
		if n < t.weight {
			return i
		}
		n -= t.weight
	}
	return len(w.r.targets) - 1
}

func (w *worker) send(measured bool) {
	r := w.r
	ti := w.pick()
	t := r.targets[ti]
	t.templates.Draw(&w.values, r.seq.Add(1)-1, w.rng)

	u := t.fixedURL
	if u == nil {
		w.urlBuf = t.path.Append(append(w.urlBuf[:0], t.prefix...), &w.values)
		var err error
		if u, err = url.Parse(string(w.urlBuf)); err != nil {
			w.fail(ti, measured, "bad URL after expansion")
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.Timeout)
	defer cancel()
	req := (&http.Request{
		Method:     t.method,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     t.header,
		Host:       orDefault(t.host, u.Host),
	}).WithContext(ctx)
	if t.hasBody {
		// A *bytes.Reader body (behind NopCloser) is one net/http knows to be in memory: it
		// sends the headers and the body in one write, as a real client does, where any
		// other reader gets the headers flushed on their own first (two packets, and two
		// reads for the server, per request).
		b := t.body.Append(nil, &w.values)
		req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
	}

	start := time.Now()
	resp, err := r.transport.RoundTrip(req)
	if err == nil {
		err = w.drain(resp.Body)
		if err != nil {
			err = fmt.Errorf("reading body: %w", err)
		}
	}
	elapsed := time.Since(start)
	if !measured || r.ctx.Err() != nil {
		return // warm-up, or abandoned because the run was interrupted
	}
	if err != nil {
		w.fail(ti, true, ErrorKind(err))
		return
	}
	w.stats[ti].status[resp.StatusCode]++
	t.latency.Record(w.id, elapsed)
}

func (w *worker) drain(body io.ReadCloser) error {
	defer body.Close()
	for {
		_, err := body.Read(w.buf)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (w *worker) fail(target int, measured bool, kind string) {
	if !measured {
		return
	}
	errs := w.stats[target].errors
	if _, ok := errs[kind]; !ok && len(errs) >= maxErrorKinds {
		kind = "other"
	}
	errs[kind]++
}

// ErrorKind names the class of a request error (timeout, connection refused, reset …):
// the error histogram's keys here and in internal/drill.
func ErrorKind(err error) string {
	prefix := ""
	if strings.HasPrefix(err.Error(), "reading body: ") {
		prefix = "reading body: "
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return prefix + "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return prefix + "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return prefix + "connection reset"
	case errors.Is(err, syscall.EPIPE):
		return prefix + "broken pipe"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return prefix + "no free local port"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return prefix + "connection closed (EOF)"
	case strings.Contains(err.Error(), notLoopback):
		return "refused: not loopback"
	}
	s := err.Error()
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	return s
}
