package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
	tcredis "github.com/testcontainers/testcontainers-go/modules/redis"
	"github.com/testcontainers/testcontainers-go/wait"
)

// When a server's variable is unset and a Docker engine answers, the server runs in a
// container started with testcontainers-go: one per kind per test binary, started by the first
// test that needs it. The images are the ones the compose files use, from the same variables
// (scripts/images.sh builds local stand-ins and prints them):
//
//	POSTGRES_IMAGE  default postgres:15-alpine
//	REDIS_IMAGE     default redis:7-alpine
//	MONGO_IMAGE     default mongo:7
//
// Every container carries the labels dblayers.testenv (the value of DBLAYERS_TEST_RUN, or "1")
// and dblayers.testenv.pid (the test binary's pid). Ryuk, testcontainers' own reaper, is off
// (its image may be out of reach): a watcher process started with the first container removes
// the binary's containers once it has exited, and scripts/test.sh removes its run's afterwards.
const (
	EnvPostgresImage = "POSTGRES_IMAGE"
	EnvRedisImage    = "REDIS_IMAGE"
	EnvMongoImage    = "MONGO_IMAGE"
	EnvRun           = "DBLAYERS_TEST_RUN"

	labelRun = "dblayers.testenv"
	labelPid = "dblayers.testenv.pid"
)

// containerStartTimeout bounds starting one container, its readiness wait included.
const containerStartTimeout = 2 * time.Minute

// sharedContainer is a server in a container that the tests of one binary share.
type sharedContainer struct {
	once sync.Once
	url  string
	err  error
	skip bool // err means no engine answers: Missing, not a failure
}

var shared struct {
	postgres, redis, mongo sharedContainer
}

// get starts the container with run once and returns its URL; kind and image name it in the
// one line logged to stderr that says where the server came from.
func (c *sharedContainer) get(t testing.TB, kind, image string, run func(ctx context.Context, image string) (string, error)) string {
	t.Helper()
	c.once.Do(func() {
		watchOnce.Do(startWatcher)
		ctx, cancel := context.WithTimeout(context.Background(), containerStartTimeout)
		defer cancel()
		if err := dockerAnswers(ctx); err != nil {
			c.err, c.skip = err, true
			return
		}
		c.url, c.err = run(ctx, image)
		if c.err == nil {
			fmt.Fprintf(os.Stderr, "testenv: %s from container %s\n", kind, image)
		}
	})
	switch {
	case c.skip:
		Missing(t, "no %s: its variable is unset and no Docker engine answers (%v)", kind, c.err)
	case c.err != nil:
		t.Fatalf("start a %s container from %s: %v", kind, image, c.err)
	}
	return c.url
}

// dockerAnswers pings the engine testcontainers would use.
func dockerAnswers(ctx context.Context) error {
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	_, err = cli.Ping(ctx, client.PingOptions{})
	return err
}

// containerPostgres is the superuser URL of the shared PostgreSQL container.
func containerPostgres(t testing.TB) string {
	t.Helper()
	return shared.postgres.get(t, "PostgreSQL", image(EnvPostgresImage, "postgres:15-alpine"),
		func(ctx context.Context, image string) (string, error) {
			ctr, err := tcpostgres.Run(ctx, image, containerOptions(
				tcpostgres.WithUsername("dbuser"), tcpostgres.WithPassword("dbpassword"),
				tcpostgres.WithDatabase("postgres"), tcpostgres.BasicWaitStrategies(),
				// A throw-away server, tuned as scripts/test.sh tunes its own.
				testcontainers.WithCmd("postgres", "-c", "fsync=off", "-c", "synchronous_commit=off",
					"-c", "full_page_writes=off", "-c", "max_connections=400"),
			)...)
			if err != nil {
				return "", err
			}
			return ctr.ConnectionString(ctx, "sslmode=disable")
		})
}

// containerRedis is the URL of the shared Redis container (redisDatabases databases).
func containerRedis(t testing.TB) string {
	t.Helper()
	return shared.redis.get(t, "Redis", image(EnvRedisImage, "redis:7-alpine"),
		func(ctx context.Context, image string) (string, error) {
			ctr, err := tcredis.Run(ctx, image, containerOptions(
				testcontainers.WithCmd("redis-server", "--databases", strconv.Itoa(redisDatabases),
					"--save", "", "--appendonly", "no"),
			)...)
			if err != nil {
				return "", err
			}
			return ctr.ConnectionString(ctx)
		})
}

// containerMongo is the URL of the shared MongoDB-wire container.
func containerMongo(t testing.TB) string {
	t.Helper()
	return shared.mongo.get(t, "MongoDB", image(EnvMongoImage, "mongo:7"),
		func(ctx context.Context, image string) (string, error) {
			ctr, err := testcontainers.Run(ctx, image, containerOptions(
				testcontainers.WithExposedPorts("27017/tcp"),
				testcontainers.WithWaitStrategy(wait.ForListeningPort("27017/tcp")),
			)...)
			if err != nil {
				return "", err
			}
			endpoint, err := ctr.PortEndpoint(ctx, "27017/tcp", "mongodb")
			return endpoint + "/", err
		})
}

// image is the value of the variable env, else def.
func image(env, def string) string {
	if v := os.Getenv(env); v != "" {
		return v
	}
	return def
}

// containerOptions are opts plus the labels every container of testenv carries.
func containerOptions(opts ...testcontainers.ContainerCustomizer) []testcontainers.ContainerCustomizer {
	run := os.Getenv(EnvRun)
	if run == "" {
		run = "1"
	}
	return append(opts, testcontainers.WithLabels(map[string]string{
		labelRun: run,
		labelPid: strconv.Itoa(os.Getpid()),
	}))
}

var watchOnce sync.Once

// startWatcher, before testcontainers reads its configuration, disables Ryuk unless the
// environment says otherwise; then it starts a detached
// shell that waits for this test binary to exit and then removes the containers labelled
// with its pid. It needs the docker command; without it the containers stay until
// scripts/test.sh (or `docker rm`) removes them.
func startWatcher() {
	if os.Getenv("TESTCONTAINERS_RYUK_DISABLED") == "" {
		os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	}
	docker, err := exec.LookPath("docker")
	if err != nil {
		return
	}
	pid := strconv.Itoa(os.Getpid())
	cmd := exec.Command("sh", "-c", `while kill -0 "$1" 2>/dev/null; do sleep 1; done
ids=$("$2" ps -aq --filter "label=$3=$1")
[ -z "$ids" ] || "$2" rm -fv $ids >/dev/null 2>&1`, "testenv-watcher", pid, docker, labelPid)
	// Its own session and no inherited output: go test waits for the test binary's output to
	// close, and an interrupt of the test's process group must not take the watcher with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err == nil {
		_ = cmd.Process.Release()
	}
}
