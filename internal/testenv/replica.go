package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// ReplicationRole is the role StartReplica's replicas connect as: it may replicate and log
// in, nothing else (not a superuser).
const ReplicationRole = "replicator"

// PrimarySettings are the postgresql.conf lines a primary needs for StartReplica: pass them
// to StartPostgres (PGOptions.Settings).
func PrimarySettings() []string {
	return []string{
		"wal_level = replica",
		"max_wal_senders = 10",
		"max_replication_slots = 10",
		"hot_standby = on",
	}
}

// StartReplica makes a hot-standby streaming replica of primary (started with
// PrimarySettings) on a free port: pg_basebackup -R as ReplicationRole (created on the
// primary if missing) with a new physical replication slot named slot, so the primary keeps
// the WAL the replica has not received yet. Stop and Start keep the clone: a restarted
// replica resumes streaming from its slot. It is stopped and removed when t ends. It runs
// PostgreSQL's binaries only: a primary in a container is Missing.
func StartReplica(t testing.TB, primary *PGServer, slot string) *PGServer {
	t.Helper()
	if primary.ctr != nil {
		Missing(t, "StartReplica needs PostgreSQL's binaries (%s, or /usr/lib/postgresql)", EnvPostgresBin)
	}
	primary.Exec(t, "postgres", `DO $$ BEGIN
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '`+ReplicationRole+`') THEN
			CREATE ROLE `+ReplicationRole+` WITH REPLICATION LOGIN;
		END IF;
	END $$`)
	dir, err := watchedDir("dbl-pgr-", pgPid)
	if err != nil {
		t.Fatal(err)
	}
	s := &PGServer{Port: FreePort(t), Dir: filepath.Join(dir, "data"), bin: primary.bin}
	t.Cleanup(func() {
		_ = s.pgctl("stop", "-m", "immediate")
		os.RemoveAll(dir)
	})
	if err := asPostgres(dir); err != nil {
		t.Fatal(err)
	}
	out, err := s.command("pg_basebackup", "-h", "127.0.0.1", "-p", fmt.Sprint(primary.Port), "-U", ReplicationRole,
		"-D", s.Dir, "-R", "-C", "-S", slot, "-X", "stream", "-c", "fast", "--no-sync").CombinedOutput()
	if err != nil {
		t.Fatalf("pg_basebackup: %v\n%s", err, out)
	}
	// The clone carries the primary's postgresql.conf; later lines win.
	conf := fmt.Sprintf("\n# replica\nport = %d\nunix_socket_directories = '%s'\nhot_standby = on\n", s.Port, s.Dir)
	f, err := os.OpenFile(filepath.Join(s.Dir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString(conf)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	s.Start(t)
	return s
}

// Exec runs sql in database db as the superuser and fails t on error.
func (s *PGServer) Exec(t testing.TB, db, sql string, args ...any) {
	t.Helper()
	Exec(t, s.URL(db), sql, args...)
}

// WaitReplayed waits until every replica has replayed all the primary has written: up to
// its insert position, which is what L3 waits for before it reads a key it wrote from a
// replica. When the last record ends on a page boundary, that position points past the
// next page's header, which replay reaches only once more WAL is written (the background
// writer logs running transactions every 15 s after activity): hence the generous deadline.
func WaitReplayed(t testing.TB, primaryURL string, replicaURLs ...string) {
	t.Helper()
	var lsn string
	require.NoError(t, QueryRow(primaryURL, "SELECT pg_current_wal_insert_lsn()::text", nil, &lsn))
	for _, u := range replicaURLs {
		WaitFor(t, 30*time.Second, "a replica to replay everything", func() bool {
			var done bool
			return QueryRow(u, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", []any{lsn}, &done) == nil && done
		})
	}
}

// PauseReplay stops a replica applying WAL (pg_wal_replay_pause): it keeps receiving, and
// its data stays as it is, so its lag grows with every write on the primary.
func (s *PGServer) PauseReplay(t testing.TB) {
	t.Helper()
	s.Exec(t, "postgres", "SELECT pg_wal_replay_pause()")
}

// ResumeReplay lets a paused replica apply WAL again.
func (s *PGServer) ResumeReplay(t testing.TB) {
	t.Helper()
	s.Exec(t, "postgres", "SELECT pg_wal_replay_resume()")
}
