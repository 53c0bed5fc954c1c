package testenv

import (
	"bytes"
	"sync"
)

// Buffer collects output written by another goroutine or process (a logger, a child
// process's stdout) and lets the test read it meanwhile.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
