package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"ftvm/cmd/ftvm/defaultguest"
	"ftvm/host"
	"ftvm/storage"
)

// defaultListen is the embedded default guest's address.
const defaultListen = "127.0.0.1:7000"

// runHosts are the names of the two host processes ftvm run starts.
var runHosts = [2]string{"h1", "h2"}

func runRun(ctx context.Context, env *cmdEnv, args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	shared := fs.String("shared", "ftvm-data", "shared storage `DIR`, created if needed")
	name := fs.String("name", "", "the VM's `NAME` (default: the guest's file name)")
	var vf vmFlags
	vf.register(fs)
	var hf hostFlags
	hf.register(fs)
	var err error
	fs.Usage = usageFunc(fs, env.stderr, "run [flags] [GUEST.wasm [ARGS...]]",
		"Runs a guest under fault tolerance on this machine: starts two host processes (h1 and h2)\n"+
			"sharing storage in a local directory, places the primary on h1 and the backup on h2, and\n"+
			"prints every event until Ctrl-C, which stops the VM and the hosts. Kill a host (kill -9 PID)\n"+
			"to watch the other take over.\n\n"+
			"Without a guest it runs the embedded default: a TCP counter server (one line in, the new\n"+
			"count out; \"get\" reads it) on "+defaultListen+" (or --listen), persisting its count to\n"+
			"its virtual disk.")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(env.stderr, "ftvm run: %v\n", err)
		return 1
	}
	var spec storage.VMSpec
	var mod []byte
	if fs.NArg() == 0 {
		if *name == "" {
			*name = defaultguest.Name
		}
		if len(vf.listen) == 0 {
			vf.listen = listFlag{defaultListen}
		}
		vf.disk = true
		spec, mod, err = vf.specOf(*name, defaultguest.Name, defaultguest.Counter(), []string{"-file", "/disk/counter"})
	} else {
		guest := fs.Arg(0)
		if *name == "" {
			*name = strings.TrimSuffix(filepath.Base(guest), ".wasm")
		}
		spec, mod, err = vf.spec(*name, guest, fs.Args()[1:])
	}
	if err != nil {
		return fail(err)
	}
	dirPath, err := filepath.Abs(*shared)
	if err != nil {
		return fail(err)
	}
	dir, err := storage.Open(dirPath)
	if err != nil {
		return fail(err)
	}
	if hs, err := host.Hosts(dir, time.Now()); err == nil {
		for _, h := range hs {
			if h.Alive && (h.Name == runHosts[0] || h.Name == runHosts[1]) {
				return fail(fmt.Errorf("host %s in %s is alive (pid %d): another ftvm run uses this directory", h.Name, dirPath, h.PID))
			}
		}
	}
	if old, err := dir.VM(*name); err == nil && !old.Stopped {
		// Left over from a run that did not stop it; its hosts are gone.
		if err := host.StopVM(dir, *name); err != nil {
			return fail(err)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return fail(err)
	}
	out := &lineWriter{w: env.stderr}
	fmt.Fprintf(out, "ftvm run: shared storage %s; starting hosts %s and %s\n", dirPath, runHosts[0], runHosts[1])
	spawned := time.Now()
	var procs []*hostProc
	defer func() {
		for _, p := range procs {
			p.terminate()
		}
	}()
	exited := make(chan *hostProc, len(runHosts))
	for _, n := range runHosts {
		p, err := spawnHost(exe, dirPath, n, &hf, env.stdout, out, exited)
		if err != nil {
			return fail(err)
		}
		procs = append(procs, p)
	}
	if err := waitRegistered(ctx, dir, spawned, exited); err != nil {
		return fail(err)
	}
	spec.Primary, spec.Backup = runHosts[0], runHosts[1]
	stop := func() int {
		fmt.Fprintf(out, "ftvm run: stopping vm %s\n", *name)
		if err := host.StopVM(dir, *name); err != nil {
			fmt.Fprintf(out, "ftvm run: %v\n", err)
		}
		waitStopped(dir, *name, time.Second)
		return 0
	}
	if err := startAndWait(ctx, out, dir, spec, mod, 15*time.Second); err != nil {
		code := stop()
		if ctx.Err() != nil {
			return code
		}
		return fail(err)
	}
	for _, p := range procs {
		fmt.Fprintf(out, "ftvm run: host %s is pid %d\n", p.name, p.cmd.Process.Pid)
	}
	fmt.Fprintf(out, "ftvm run: Ctrl-C stops everything; 'ftvm status --shared %s' shows the pair\n", *shared)
	alive := len(procs)
	for alive > 0 {
		select {
		case p := <-exited:
			alive--
			fmt.Fprintf(out, "ftvm run: host %s exited: %v\n", p.name, p.err)
		case <-ctx.Done():
			return stop()
		}
	}
	return fail(fmt.Errorf("both hosts exited"))
}

// hostProc is a host daemon started by ftvm run.
type hostProc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func spawnHost(exe, shared, name string, hf *hostFlags, stdout io.Writer, events *lineWriter, exited chan<- *hostProc) (*hostProc, error) {
	args := append([]string{"host", "--shared", shared, "--name", name}, hf.args()...)
	cmd := exec.Command(exe, args...)
	cmd.Stdout = stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	// Their own process group, so Ctrl-C reaches ftvm run alone and it can
	// stop the VM before the hosts; and they die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start host %s: %w", name, err)
	}
	p := &hostProc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			fmt.Fprintf(events, "%-3s| %s\n", name, sc.Text())
		}
		p.err = cmd.Wait()
		close(p.done)
		exited <- p
	}()
	return p, nil
}

// terminate asks the host to shut down, and kills it if it does not.
func (p *hostProc) terminate() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func waitRegistered(ctx context.Context, dir *storage.Dir, since time.Time, exited <-chan *hostProc) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		n := 0
		if hs, err := dir.Hosts(); err == nil {
			for _, h := range hs {
				if (h.Name == runHosts[0] || h.Name == runHosts[1]) && h.Started.After(since.Add(-time.Second)) && h.Seen.After(since) {
					n++
				}
			}
		}
		if n == len(runHosts) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case p := <-exited:
			return fmt.Errorf("host %s exited at start: %v", p.name, p.err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("the hosts did not register within 15s")
}

func waitStopped(dir *storage.Dir, vm string, max time.Duration) {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		sts, err := dir.Statuses(vm)
		if err != nil {
			return
		}
		running := false
		for _, st := range sts {
			if st.State == "running" || st.State == "starting" {
				running = true
			}
		}
		if !running {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lineWriter serializes whole lines from several goroutines.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
