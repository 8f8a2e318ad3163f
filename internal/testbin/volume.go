package testbin

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// SecretVolume is a directory laid out as the kubelet lays out a mounted
// Secret: the files live in a versioned directory, each name is a symlink
// through ..data, and an update writes a new version and swaps ..data
// atomically, so a reader sees the old files or the new ones, never a mix.
type SecretVolume struct {
	Dir      string
	versions int
}

// Path returns the path a container would read the file name at.
func (v *SecretVolume) Path(name string) string { return filepath.Join(v.Dir, name) }

// Write publishes files as the volume's new content.
func (v *SecretVolume) Write(t testing.TB, files map[string][]byte) {
	t.Helper()
	v.versions++
	version := "..v" + strconv.Itoa(v.versions)
	if err := os.Mkdir(filepath.Join(v.Dir, version), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(v.Dir, version, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(v.Path(name)); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), v.Path(name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	tmp := filepath.Join(v.Dir, "..data_tmp")
	if err := os.Symlink(version, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.Dir, "..data")); err != nil {
		t.Fatal(err)
	}
}
