package l6_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/layertest"
	"github.com/dblayers/dblayers/internal/redisclient"
	"github.com/dblayers/dblayers/internal/testenv"
	"github.com/dblayers/dblayers/internal/writequeue"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// binary builds cmd/name (once per test run) and returns its path.
func binary(t testing.TB, name string) string {
	t.Helper()
	return testenv.Build(t, "github.com/dblayers/dblayers/cmd/"+name)
}

// startAPIProcess runs cmd/l6 (no workers inside) on a free port until the test ends.
func startAPIProcess(t *testing.T, dbURL, redisURL string) layertest.Target {
	t.Helper()
	port := testenv.FreePort(t)
	p := testenv.StartProcess(t, binary(t, "l6"), "DATABASE_URL="+dbURL, "REDIS_URL="+redisURL, "HOST=127.0.0.1",
		fmt.Sprint("PORT=", port), "WORKER_ENABLED=false", "LOG_LEVEL=warn")
	tg := layertest.Target{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Layer: "6-write-buffering"}
	tg.Settle = func(t testing.TB) { drained(t, tg) }
	p.AwaitHealthy(t, tg.URL, 30*time.Second)
	return tg
}

// workerProcess is a running cmd/l6-worker.
type workerProcess struct {
	*testenv.Process
	name string // its consumers are name-0, name-1 … (WORKER_CONCURRENCY, default 2)
}

// startWorkerProcess runs cmd/l6-worker, with its default two workers, against the test's
// databases; env adds or overrides variables.
func startWorkerProcess(t *testing.T, dbURL, redisURL, name string, env ...string) *workerProcess {
	t.Helper()
	env = append([]string{"DATABASE_URL=" + dbURL, "REDIS_URL=" + redisURL, "WORKER_CONSUMER=" + name,
		"WORKER_CLAIM_MIN_IDLE=500ms", "WORKER_POLL_INTERVAL=100ms", "WORKER_BATCH_SIZE=100", "LOG_LEVEL=info"}, env...)
	return &workerProcess{Process: testenv.StartProcess(t, binary(t, "l6-worker"), env...), name: name}
}

// held is the number of entries the consumers of worker process name have been delivered
// and not acknowledged.
func held(t testing.TB, rdb redis.UniversalClient, name string) int {
	t.Helper()
	p, err := rdb.XPending(context.Background(), "write_queue", writequeue.Group).Result()
	if err != nil && strings.HasPrefix(err.Error(), "NOGROUP") {
		return 0
	}
	require.NoError(t, err)
	n := 0
	for consumer, count := range p.Consumers {
		if strings.HasPrefix(consumer, name+"-") {
			n += int(count)
		}
	}
	return n
}

func counter(t testing.TB, rdb redis.UniversalClient, key string) int64 {
	t.Helper()
	n, err := rdb.Get(context.Background(), key).Int64()
	if errors.Is(err, redis.Nil) {
		return 0
	}
	require.NoError(t, err)
	return n
}

// A burst of 10,000 writes (1,000 keys, each written 10 times in order) through cmd/l6
// while the cmd/l6-worker process is SIGKILLed twice with a batch in hand and restarted: afterwards every key holds
// its last acknowledged value, and every write was applied and counted exactly once.
func TestWorkerKilledDuringBurst(t *testing.T) {
	dbURL, redisURL := testenv.PostgresURL(t), testenv.RedisURL(t)
	tg := startAPIProcess(t, dbURL, redisURL)
	rdb, err := redisclient.New(redisURL)
	require.NoError(t, err)
	defer rdb.Close()

	const writers, perWriter, keysPerWriter = 50, 200, 20
	last := make([]map[string]string, writers)
	var failed atomic.Int64
	var wg sync.WaitGroup
	// One client keeping a connection per writer alive (the default keeps two).
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: writers}}
	defer client.CloseIdleConnections()
	for w := range writers {
		wg.Go(func() {
			m := map[string]string{}
			for j := range perWriter {
				k, v := fmt.Sprintf("burst-%d-%d", w, j%keysPerWriter), fmt.Sprint("v", j)
				body, _ := json.Marshal(map[string]string{"key": k, "value": v})
				resp, err := client.Post(tg.URL+"/write", "application/json", bytes.NewReader(body))
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
					continue
				}
				m[k] = v
			}
			last[w] = m
		})
	}

	began := time.Now()
	stranded := 0
	for i, after := range []int64{1000, 5000} {
		// No linger: under the burst the workers then always have batches in hand.
		p := startWorkerProcess(t, dbURL, redisURL, fmt.Sprint("burst", i), "WORKER_BATCH_LINGER=0")
		testenv.WaitFor(t, 30*time.Second, fmt.Sprintf("%d writes applied", after), func() bool {
			return counter(t, rdb, "write_queue:processed") >= after
		})
		testenv.WaitFor(t, 10*time.Second, "the workers to hold batches", func() bool { return held(t, rdb, p.name) >= 20 })
		require.NoError(t, p.Cmd.Process.Kill())
		require.Error(t, p.Wait(t, 5*time.Second), "killed")
		n := held(t, rdb, p.name)
		t.Logf("worker process %s SIGKILLed with %d entries delivered and unacknowledged", p.name, n)
		stranded += n
	}
	startWorkerProcess(t, dbURL, redisURL, "burst-final")
	wg.Wait()
	t.Logf("burst done after %s", time.Since(began))
	drained(t, tg)
	t.Logf("queue drained after %s", time.Since(began))

	require.Zero(t, failed.Load(), "every write of the burst was acknowledged")
	assert.Positive(t, stranded, "a worker died with entries in hand")
	st := layertest.NewClient(t, tg).Get("/stats").Body
	assert.Equal(t, float64(writers*perWriter), st["writes_queued"])
	assert.Equal(t, float64(writers*perWriter), st["writes_processed"], "each write counted once, however often applied")
	assert.Equal(t, 0.0, st["pending"])
	assert.Equal(t, 0.0, st["dead_lettered"])
	rows := layertest.StoredValues(t, dbURL)
	require.Len(t, rows, writers*keysPerWriter)
	c := layertest.NewClient(t, tg)
	for w := range writers {
		for k, v := range last[w] {
			assert.Equal(t, v, rows[k], "PostgreSQL holds the last acknowledged write of %s", k)
			if w%10 == 0 {
				assert.Equal(t, v, c.Read(k).Body["value"], k)
			}
		}
	}
}

// SIGTERM: the worker process finishes and acknowledges the batch in hand, leaves the
// group, and exits 0, with the rest of the backlog still queued for the next worker. Its
// -healthcheck (the compose health check) passes while it runs, not after.
func TestWorkerDrainsOnSIGTERM(t *testing.T) {
	dbURL, redisURL := testenv.PostgresURL(t), testenv.RedisURL(t)
	rdb, err := redisclient.New(redisURL)
	require.NoError(t, err)
	defer rdb.Close()
	q := writequeue.NewQueue(rdb, "write_queue", 0)
	defer q.Close()
	const total = 20_000
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := g; i < total; i += 16 {
				_, err := q.Enqueue(context.Background(), fmt.Sprint("k", i), "v")
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()

	healthcheck := func() error {
		cmd := exec.Command(binary(t, "l6-worker"), "-healthcheck")
		cmd.Env = append(os.Environ(), "REDIS_URL="+redisURL, "WORKER_CONSUMER=drain")
		return cmd.Run()
	}
	require.Error(t, healthcheck(), "no worker yet")
	// Batches of 10: a backlog left when SIGTERM comes, however fast the machine.
	p := startWorkerProcess(t, dbURL, redisURL, "drain", "WORKER_BATCH_SIZE=10")
	testenv.WaitFor(t, 30*time.Second, "the worker to apply writes", func() bool {
		return counter(t, rdb, "write_queue:processed") > 0
	})
	assert.NoError(t, healthcheck(), "the running worker's heartbeat")
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, p.Wait(t, 15*time.Second), "exit status 0")
	assert.Error(t, healthcheck(), "the stopped worker removed its heartbeat")

	assert.Zero(t, held(t, rdb, p.name), "the batch in hand was applied and acknowledged")
	consumers, err := rdb.XInfoConsumers(context.Background(), "write_queue", writequeue.Group).Result()
	require.NoError(t, err)
	assert.Empty(t, consumers, "the worker left the group")
	processed := counter(t, rdb, "write_queue:processed")
	left := counter(t, rdb, "write_queue:backlog")
	stream, err := rdb.XLen(context.Background(), "write_queue").Result()
	require.NoError(t, err)
	assert.Equal(t, left, stream, "what was applied was trimmed from the stream")
	assert.Positive(t, left, "the worker stopped without working through the whole backlog")
	assert.Equal(t, int64(total), processed+left)
	assert.Equal(t, int(processed), layertest.CountRows(t, dbURL, "records"), "what was counted was applied")
}
