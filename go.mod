module ftvm

go 1.26.0

require github.com/tetratelabs/wazero v1.12.0

require (
	github.com/google/pprof v0.0.0-20261105003125-4bf881d7fb0b
	golang.org/x/sys v0.46.0
)

require golang.org/x/term v0.44.0
