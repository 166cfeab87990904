package vmm

import (
	"testing"

	"ftvm/wasi"
)

// The tracker follows a file unlinked while open to wasi.OrphanDir, under
// the lowest handle holding it, as the OS host moves it there; a directory
// removed while open is lost.
func TestTrackerFollowsUnlinkedFiles(t *testing.T) {
	tr := newHandleTracker(wasi.Config{Preopens: []wasi.Preopen{{GuestPath: "/d"}}})
	tr.complete = true
	rw := wasi.OpenRequest{Read: true, Write: true}
	tr.opened(3, "tmp", rw, wasi.OpenResult{Handle: 100, Filetype: wasi.FiletypeRegularFile})
	tr.opened(3, "./tmp", rw, wasi.OpenResult{Handle: 90, Filetype: wasi.FiletypeRegularFile})
	tr.opened(3, "keep", rw, wasi.OpenResult{Handle: 80, Filetype: wasi.FiletypeRegularFile})
	tr.opened(3, "dir", wasi.OpenRequest{Read: true}, wasi.OpenResult{Handle: 70, Filetype: wasi.FiletypeDirectory})
	tr.removed(3, "tmp", true)
	tr.removed(3, "dir", false)
	a, err := tr.adoption()
	if err != nil {
		t.Fatal(err)
	}
	want := map[wasi.Handle]wasi.Adopted{
		70:  {Handle: 70, Kind: wasi.AdoptLost},
		80:  {Handle: 80, Kind: wasi.AdoptFile, Rel: "keep", Req: rw},
		90:  {Handle: 90, Kind: wasi.AdoptFile, Rel: wasi.OrphanPath(90), Req: rw},
		100: {Handle: 100, Kind: wasi.AdoptFile, Rel: wasi.OrphanPath(90), Req: rw},
	}
	if len(a.Handles) != len(want) {
		t.Fatalf("adoption %+v", a.Handles)
	}
	for _, got := range a.Handles {
		if got != want[got.Handle] {
			t.Errorf("handle %d: %+v, want %+v", got.Handle, got, want[got.Handle])
		}
	}
}
