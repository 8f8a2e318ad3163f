package token

import (
	"bytes"
	"context"
	"os"
	"slices"
	"time"
)

// Watch re-reads f every interval until ctx ends and, when the files'
// content has changed, calls apply with the keys they now hold. Reading
// content rather than watching for events suits how Kubernetes updates a
// mounted Secret: it writes a new directory and swaps the ..data symlink,
// so the file's path stays and its content changes at once. A file that
// cannot be read or parsed is reported to failed and the old keys stay.
//
// loaded are the keys the caller read from f before: if the files changed
// between that read and this call, apply gets their keys at once.
func (f KeyFiles) Watch(ctx context.Context, interval time.Duration, loaded Keys, apply func(Keys) error, failed func(error)) {
	last := f.contents()
	if ks, err := f.Load(); err == nil && !ks.same(loaded) {
		if err := apply(ks); err != nil {
			failed(err)
		}
	}
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

// same reports whether ks and o sign with and accept the same keys, by ID.
func (ks Keys) same(o Keys) bool {
	if (ks.Signing == nil) != (o.Signing == nil) || ks.Signing != nil && ks.Signing.ID != o.Signing.ID {
		return false
	}
	return slices.EqualFunc(ks.Accept, o.Accept, func(a, b Key) bool { return a.ID == b.ID })
}
