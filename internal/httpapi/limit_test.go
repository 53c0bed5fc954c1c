package httpapi_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/httpapi"
	"github.com/dblayers/dblayers/internal/record"
)

// oversizedAnswer is what a client sending an oversized body saw on its connection.
type oversizedAnswer struct {
	status int   // of the first response; 100 if the server asked for the body
	read   error // reading the answer, then to the end of the connection: nil if it ended in a clean close
}

// postOversized sends POST /write over a new TCP connection, with a body of size bytes that
// it keeps sending while it reads the answer, as curl does: with a Content-Length and
// "Expect: 100-continue" (curl's default for bodies over 1 MB, whose body follows after a
// second without an answer; here at once, the harder case), or chunked.
func postOversized(t *testing.T, addr string, chunked bool, size int) oversizedAnswer {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(30*time.Second)))

	var req bytes.Buffer
	req.WriteString("POST /write HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n")
	chunk := bytes.Repeat([]byte("v"), 32<<10)
	if chunked {
		req.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		for sent := 0; sent < size; sent += len(chunk) {
			fmt.Fprintf(&req, "%x\r\n%s\r\n", len(chunk), chunk)
		}
		req.WriteString("0\r\n\r\n")
	} else {
		fmt.Fprintf(&req, "Content-Length: %d\r\nExpect: 100-continue\r\n\r\n", size)
		req.Write(bytes.Repeat([]byte("v"), size))
	}
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		_, _ = conn.Write(req.Bytes()) // the server may close before it has read all of it
	}()
	defer func() { <-sent }()

	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return oversizedAnswer{read: err}
	}
	ans := oversizedAnswer{status: resp.StatusCode}
	if _, err := io.ReadAll(resp.Body); err != nil {
		ans.read = err
		return ans
	}
	if _, err := br.ReadByte(); err != io.EOF {
		ans.read = fmt.Errorf("after the answer: %v, want a clean close (EOF)", err)
	}
	return ans
}

// An oversized body gets its 413, every time, and the connection then closes cleanly: a
// declared Content-Length over the limit is answered before the body is read (no
// "100 Continue"), a chunked body when it crosses the limit; the server reads what the client
// is still sending before it closes, so that no reset destroys the answer.
func TestOversizedBodyAlwaysGets413(t *testing.T) {
	const limit, size, rounds = 64 << 10, 1 << 20, 200
	r := httpapi.NewRouter(httpapi.Options{Layer: "test", Logger: slog.New(slog.DiscardHandler),
		Limits: httpapi.Limits{MaxBodyBytes: limit, MaxValueBytes: limit}})
	r.Post("/write", httpapi.Handle(httpapi.WriteHandler(&memStore{recs: map[string]record.Record{}}, "ok")))
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")

	for _, chunked := range []bool{false, true} {
		name := map[bool]string{false: "Content-Length with Expect: 100-continue", true: "chunked"}[chunked]
		t.Run(name, func(t *testing.T) {
			got413, clean := 0, 0
			for i := range rounds {
				ans := postOversized(t, addr, chunked, size)
				if ans.status == http.StatusRequestEntityTooLarge {
					got413++
				}
				if ans.read == nil {
					clean++
				} else if failed := i + 1 - clean; failed <= 3 {
					t.Logf("request %d: status %d, %v", i, ans.status, ans.read)
				}
			}
			t.Logf("%d of %d got 413, %d closed cleanly", got413, rounds, clean)
			assert.Equal(t, rounds, got413, "every oversized request is answered 413")
			assert.Equal(t, rounds, clean, "and its connection is closed cleanly after the answer")
		})
	}
}
