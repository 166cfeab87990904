package vmm

import (
	"bytes"
	"testing"

	"ftvm/replog"
	"ftvm/wasi"
)

// FuzzDecodeIntent: an intent entry comes from the logging channel or a log
// file, so any bytes may arrive. Decoding never panics, and what decodes
// encodes to the same bytes (each intent has one encoding), which
// describeIntent can show.
func FuzzDecodeIntent(f *testing.F) {
	dir := probe{filetype: wasi.FiletypeDirectory, ino: 7}
	for _, in := range []struct {
		f      effect
		probes []probe
	}{
		{effect{m: mPwrite, h: 9, off: 24, n: 8}, nil},
		{effect{m: mMkdir, dir: 3, path: "lock-1"}, []probe{{errno: wasi.ENOENT}}},
		{effect{m: mRename, dir: 3, path: "a", dir2: 4, path2: "b"}, []probe{dir, {errno: wasi.ENOENT}}},
		{effect{m: mLink, dir: 3, path: "a", dir2: 3, path2: "b", follow: true}, []probe{dir, dir}},
		{effect{m: mSymlink, dir: 3, path: "s", target: "t"}, []probe{{errno: wasi.ENOENT}}},
		{effect{m: mOpen, dir: 3, path: "x", oflags: wasi.OflagCreat | wasi.OflagExcl}, []probe{{errno: wasi.ENOENT}}},
	} {
		f.Add(encodeIntent(27, []byte{byte(mFilestat), 0, 1, 2}, in.f, in.probes))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := decodeIntent(replog.Entry{Seq: 1, Pos: 1, Type: TypeIntent, Data: data})
		_ = DescribeIntent(data)
		if err != nil {
			return
		}
		if again := encodeIntent(in.call, in.before, in.effect, in.probes); !bytes.Equal(again, data) {
			t.Fatalf("decoded %+v, which encodes to %x, not %x", in, again, data)
		}
	})
}
