package token

import (
	"bytes"
	"context"
	"os"
	"time"
)

// Watch re-reads f every interval until ctx ends and, when the files'
// content has changed, calls apply with the keys they now hold. Reading
// content rather than watching for events suits how Kubernetes updates a
// mounted Secret: it writes a new directory and swaps the ..data symlink,
// so the file's path stays and its content changes at once. A file that
// cannot be read or parsed is reported to failed and the old keys stay.
func (f KeyFiles) Watch(ctx context.Context, interval time.Duration, apply func(Keys) error, failed func(error)) {
	last := f.contents()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := f.contents()
		if bytes.Equal(now, last) {
			continue
		}
		ks, err := f.Load()
		if err == nil {
			err = apply(ks)
		}
		if err != nil {
			failed(err)
		}
		last = now // report a bad file once, not every interval; a fix changes it again
	}
}

// contents returns the files' bytes, or what stands for a file that cannot
// be read, so that a change either way is noticed.
func (f KeyFiles) contents() []byte {
	var all []byte
	for _, name := range []string{f.Private, f.Public} {
		if name == "" {
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			b = []byte("unreadable: " + err.Error())
		}
		all = append(append(all, b...), 0)
	}
	return all
}
