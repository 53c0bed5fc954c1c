package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
	tcredis "github.com/testcontainers/testcontainers-go/modules/redis"
	"github.com/testcontainers/testcontainers-go/wait"
)

// When a server's variable is unset, no native server can be had (native.go) and a Docker
// engine answers, the server runs in a container started with testcontainers-go: a shared one
// per kind per test binary, started by the first test that needs it, and private ones for the
// tests that stop and start servers.
// The images are the ones the compose files use, from the same variables (scripts/images.sh
// builds local stand-ins and prints them):
//
//	POSTGRES_IMAGE  default postgres:15-alpine
//	REDIS_IMAGE     default redis:7-alpine
//	MONGO_IMAGE     default mongo:7
//
// Containers are reached on loopback only: every port is published on 127.0.0.1, and for a
// local engine (a unix socket or named pipe) testcontainers is told to dial 127.0.0.1 through
// TESTCONTAINERS_HOST_OVERRIDE. Without it, testcontainers takes a machine with /.dockerenv
// for a container and dials its default gateway. When the containers would be reached on any
// other address (a remote engine, an override that is not loopback) the test fails before
// dialing: no test sends traffic off the machine.
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

// envHostOverride names the host testcontainers reaches published ports on. It reads the
// variable each time it first needs a container's host, after dockerEngine has set it.
const envHostOverride = "TESTCONTAINERS_HOST_OVERRIDE"

// engine is whether a Docker engine answers, and whether its containers are reached on
// loopback, asked once per test binary.
var engine struct {
	once    sync.Once
	err     error
	hostErr error
}

// dockerEngine returns nil when a Docker engine answers. The first call, before
// testcontainers reads its configuration, disables Ryuk unless the environment says
// otherwise, points testcontainers at 127.0.0.1 for a local engine (loopbackHost), and
// starts the watcher that removes this binary's containers.
func dockerEngine() error {
	engine.once.Do(func() {
		if os.Getenv("TESTCONTAINERS_RYUK_DISABLED") == "" {
			os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cli, err := testcontainers.NewDockerClientWithOpts(ctx)
		if err == nil {
			_, err = cli.Ping(ctx, client.PingOptions{})
			if err == nil {
				engine.hostErr = loopbackHost(ctx, cli.DaemonHost())
			}
			cli.Close()
		}
		if engine.err = err; err == nil {
			startWatcher()
		}
	})
	return engine.err
}

// loopbackHost sets TESTCONTAINERS_HOST_OVERRIDE to 127.0.0.1 when the engine at daemonHost
// (a Docker host URL) is local and the variable is unset. It returns an error when the host
// testcontainers would then dial for a container's ports (the override, else the host of a
// tcp:// engine) is not a loopback address.
func loopbackHost(ctx context.Context, daemonHost string) error {
	u, err := url.Parse(daemonHost)
	if err != nil {
		return fmt.Errorf("parse the Docker host %q: %w", daemonHost, err)
	}
	host, set := os.LookupEnv(envHostOverride)
	if !set {
		host = u.Hostname()
		if u.Scheme == "unix" || u.Scheme == "npipe" {
			host = "127.0.0.1"
			os.Setenv(envHostOverride, host)
		}
	}
	if err := onLoopback(ctx, host); err != nil {
		return fmt.Errorf("the containers of the Docker engine at %s would be reached at %q (%v); "+
			"tests send no traffic off this machine: use a local engine, or set %s=127.0.0.1 "+
			"if its ports are forwarded to loopback", daemonHost, host, err, envHostOverride)
	}
	return nil
}

// onLoopback returns nil when host (a name or an address) has addresses, all of them loopback.
func onLoopback(ctx context.Context, host string) error {
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return err
	}
	if len(addrs) == 0 {
		return errors.New("no address")
	}
	for _, a := range addrs {
		if !a.Unmap().IsLoopback() {
			return fmt.Errorf("%s is not a loopback address", a)
		}
	}
	return nil
}

// requireLoopback fails t when dockerEngine found that containers would be reached on an
// address that is not loopback, before anything dials it.
func requireLoopback(t testing.TB) {
	t.Helper()
	if engine.hostErr != nil {
		t.Fatal(engine.hostErr)
	}
}

// containerShared starts the shared server s of this test binary from image with run,
// unless it runs, and returns its URL. Without a Docker engine the test is Missing.
func containerShared(t testing.TB, s *sharedServer, image string, run func(ctx context.Context, image string) (string, error)) string {
	t.Helper()
	if err := dockerEngine(); err != nil {
		Missing(t, "no %s: its variable is unset, no native server can be had here, and no Docker engine answers (%v)",
			s.kind, err)
	}
	requireLoopback(t)
	return s.get(t, func() (string, string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), containerStartTimeout)
		defer cancel()
		url, err := run(ctx, image)
		if err != nil {
			return "", "", fmt.Errorf("container from %s: %w", image, err)
		}
		return url, "container " + image, nil
	})
}

// containerPostgres is the superuser URL of the shared PostgreSQL container.
func containerPostgres(t testing.TB) string {
	t.Helper()
	return containerShared(t, &shared.postgres, image(EnvPostgresImage, "postgres:15-alpine"),
		func(ctx context.Context, image string) (string, error) {
			ctr, err := tcpostgres.Run(ctx, image, containerOptions(
				tcpostgres.WithUsername(pgUser), tcpostgres.WithPassword(pgPassword),
				tcpostgres.WithDatabase("postgres"), tcpostgres.BasicWaitStrategies(),
				// A throw-away server, with the settings of every test server.
				testcontainers.WithCmd(append([]string{"postgres"}, postgresFlags(pgSettings())...)...),
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
	return containerShared(t, &shared.redis, image(EnvRedisImage, "redis:7-alpine"),
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
	return containerShared(t, &shared.mongo, image(EnvMongoImage, "mongo:7"),
		func(ctx context.Context, image string) (string, error) {
			ctr, err := testcontainers.Run(ctx, image, containerOptions(
				testcontainers.WithExposedPorts(mongoPort),
				testcontainers.WithWaitStrategy(wait.ForListeningPort(mongoPort)),
			)...)
			if err != nil {
				return "", err
			}
			endpoint, err := ctr.PortEndpoint(ctx, mongoPort, "mongodb")
			return endpoint + "/", err
		})
}

// The container ports, and the superuser of every test PostgreSQL.
const (
	postgresPort = "5432/tcp"
	redisPort    = "6379/tcp"
	mongoPort    = "27017/tcp"
	pgUser       = "dbuser"
	pgPassword   = "dbpassword"
)

// image is the value of the variable env, else def.
func image(env, def string) string {
	if v := os.Getenv(env); v != "" {
		return v
	}
	return def
}

// containerOptions are opts plus the labels every container of testenv carries, and its
// ports published on loopback only. They come after a module's own options, so
// publishOnLoopback sees every exposed port.
func containerOptions(opts ...testcontainers.ContainerCustomizer) []testcontainers.ContainerCustomizer {
	run := os.Getenv(EnvRun)
	if run == "" {
		run = "1"
	}
	return append(opts, testcontainers.WithLabels(map[string]string{
		labelRun: run,
		labelPid: strconv.Itoa(os.Getpid()),
	}), testcontainers.CustomizeRequestOption(publishOnLoopback))
}

// loopback is the host address every container port is published on.
var loopback = netip.AddrFrom4([4]byte{127, 0, 0, 1})

// publishOnLoopback binds each of req's exposed ports to 127.0.0.1, keeping a host port set
// by an earlier modifier (else Docker picks one). A request must name its ports: without,
// testcontainers would publish all of the image's on every address.
func publishOnLoopback(req *testcontainers.GenericContainerRequest) error {
	if len(req.ExposedPorts) == 0 {
		return errors.New("testenv: a container must name the ports it exposes")
	}
	var ports []network.Port
	for _, spec := range req.ExposedPorts {
		pr, err := network.ParsePortRange(spec)
		if err != nil {
			return fmt.Errorf("exposed port %q: %w", spec, err)
		}
		ports = slices.AppendSeq(ports, pr.All())
	}
	return testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
		if hc.PortBindings == nil {
			hc.PortBindings = network.PortMap{}
		}
		for _, p := range ports {
			bindings := hc.PortBindings[p]
			if len(bindings) == 0 {
				bindings = []network.PortBinding{{}}
			}
			for i := range bindings {
				bindings[i].HostIP = loopback
			}
			hc.PortBindings[p] = bindings
		}
	})(req)
}

// startWatcher starts a watcher (afterExit) that removes the containers labelled with this
// test binary's pid once it has exited. It needs the docker command; without it the
// containers stay until scripts/test.sh (or `docker rm`) removes them.
func startWatcher() {
	docker, err := exec.LookPath("docker")
	if err != nil {
		return
	}
	_ = afterExit(os.Getpid(), `ids=$("$1" ps -aq --filter "label=$2=$3")
[ -z "$ids" ] || "$1" rm -fv $ids >/dev/null 2>&1`, docker, labelPid, strconv.Itoa(os.Getpid()))
}

// privateContainer is a container of one test's own that it stops and starts. Its port is
// published on a fixed port of 127.0.0.1, so that its URL stays the same across a restart.
type privateContainer struct {
	ctr *testcontainers.DockerContainer
}

// startPrivateContainer starts a container of kind from the image named by env (else def),
// with port (e.g. "5432/tcp") published on hostPort, and waits with ready, now and after each
// restart. It is removed when t ends.
func startPrivateContainer(t testing.TB, kind, env, def, port string, hostPort int, ready wait.Strategy,
	opts ...testcontainers.ContainerCustomizer) *privateContainer {
	t.Helper()
	requireLoopback(t)
	img := image(env, def)
	ctx, cancel := context.WithTimeout(context.Background(), containerStartTimeout)
	defer cancel()
	ctr, err := testcontainers.Run(ctx, img, containerOptions(append(opts,
		testcontainers.WithExposedPorts(port),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.PortBindings = network.PortMap{network.MustParsePort(port): {{HostPort: strconv.Itoa(hostPort)}}}
		}),
		testcontainers.WithWaitStrategyAndDeadline(containerStartTimeout, ready),
	)...)...)
	if ctr != nil {
		t.Cleanup(func() {
			if err := testcontainers.TerminateContainer(ctr); err != nil {
				t.Logf("remove the %s container: %v", kind, err)
			}
		})
	}
	if err != nil {
		t.Fatalf("start a private %s container from %s: %v", kind, img, err)
	}
	t.Logf("testenv: private %s from container %s on port %d", kind, img, hostPort)
	return &privateContainer{ctr: ctr}
}

// start starts the stopped container and waits until it is ready.
func (c *privateContainer) start(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), containerStartTimeout)
	defer cancel()
	if err := c.ctr.Start(ctx); err != nil {
		t.Fatalf("start container %s: %v", c.ctr.GetContainerID()[:12], err)
	}
}

// stop stops the container: its main process gets the image's stop signal, and SIGKILL after
// grace (at once when grace is 0, as a crash would).
func (c *privateContainer) stop(t testing.TB, grace time.Duration) {
	t.Helper()
	if err := c.ctr.Stop(context.Background(), &grace); err != nil {
		t.Fatalf("stop container %s: %v", c.ctr.GetContainerID()[:12], err)
	}
}
