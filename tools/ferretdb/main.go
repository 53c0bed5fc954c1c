// Command ferretdb runs an embedded FerretDB v1 server with its PostgreSQL
// backend, speaking the MongoDB wire protocol on a loopback address.
//
// It exists because MongoDB itself is not packaged in Debian and this
// project's machines can reach no download site for it, while the code under
// test talks to MongoDB through the official Go driver. FerretDB translates
// the MongoDB protocol onto tables of a PostgreSQL database (one schema per
// MongoDB database, one table per collection, a unique index on _id), so the
// test runner and the local stack get a real MongoDB-compatible server from
// one Go build (no cgo) and the PostgreSQL they already run. Before serving,
// it installs in that database the index trigger of index.go, which makes
// FerretDB's look-ups by _id use an index.
//
// It lives in its own Go module so that FerretDB's large dependency tree
// stays out of the main module.
//
// Usage:
//
//	ferretdb -postgresql-url URL [-postgresql-wait 30s] [-listen-addr 127.0.0.1:27017] [-log-level warn]
//
// Once the listener is bound, one line is written to standard output:
//
//	ferretdb ready: mongodb://127.0.0.1:27017/
//
// so a caller may start it with port 0 and read the chosen address there.
// It runs until SIGINT or SIGTERM, then closes the listener, waits for open
// connections to finish, closes its PostgreSQL connections and exits 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// demoteResponseDumps lowers FerretDB's multi-line dumps of failed command
// responses ("Response header: ..." and "Response message: ...") from WARN
// to INFO. FerretDB logs one for every command that answers ok: 0, which
// includes the endSessions sent by every driver Disconnect and every
// NotImplemented error; the client gets those errors anyway, so at the
// default level they are only noise. -log-level info shows them again.
type demoteResponseDumps struct{ slog.Handler }

func (h demoteResponseDumps) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn &&
		(strings.HasPrefix(r.Message, "Response header: ") || strings.HasPrefix(r.Message, "Response message:")) {
		if !h.Handler.Enabled(ctx, slog.LevelInfo) {
			return nil
		}
		r.Level = slog.LevelInfo
	}
	return h.Handler.Handle(ctx, r)
}

func (h demoteResponseDumps) WithAttrs(attrs []slog.Attr) slog.Handler {
	return demoteResponseDumps{h.Handler.WithAttrs(attrs)}
}

func (h demoteResponseDumps) WithGroup(name string) slog.Handler {
	return demoteResponseDumps{h.Handler.WithGroup(name)}
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("ferretdb", flag.ContinueOnError)
	listenAddr := fs.String("listen-addr", "127.0.0.1:27017", "TCP `host:port` to listen on (port 0 picks a free port)")
	pgURL := fs.String("postgresql-url", "", "PostgreSQL connection `URL` of the database holding the documents (required)")
	pgWait := fs.Duration("postgresql-wait", 30*time.Second, "how long to wait at start for the PostgreSQL backend to accept connections")
	logLevel := fs.String("log-level", "warn", "log `level`: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	logger := slog.New(demoteResponseDumps{slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})})

	if *pgURL == "" {
		return errors.New("-postgresql-url is required")
	}
	backend, err := backendURL(*pgURL)
	if err != nil {
		return err
	}
	if err := installIDLookup(context.Background(), backend, *pgWait); err != nil {
		return err
	}

	// ferretdb.New binds the listener, so the address is taken (and a busy
	// port reported) before it returns.
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:      ferretdb.ListenerConfig{TCP: *listenAddr},
		Logger:        logger,
		Handler:       "postgresql",
		PostgreSQLURL: backend,
	})
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		// Restore default signal handling: a second signal kills at once.
		stop()
		logger.Info("shutting down")
	}()

	fmt.Printf("ferretdb ready: %s\n", f.MongoDBURI())

	return f.Run(ctx)
}
