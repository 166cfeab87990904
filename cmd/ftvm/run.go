package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
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

// restartDelay is how long ftvm run waits before starting a host process
// that died again: a repaired server that rejoins as a spare.
const restartDelay = time.Second

// runHostNames returns the names of the n host processes ftvm run starts.
func runHostNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("h%d", i+1)
	}
	return names
}

func runRun(ctx context.Context, env *cmdEnv, args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	shared := fs.String("shared", "ftvm-data", "shared storage `DIR`, created if needed")
	name := fs.String("name", "", "the VM's `NAME` (default: the guest's file name)")
	var vf vmFlags
	vf.register(fs)
	var hf hostFlags
	hf.register(fs)
	nHosts := fs.Int("hosts", 3, "how many host processes to start (at least 2): h1, h2, ...")
	noRestart := fs.Bool("no-restart", false, "do not start a host process that died again")
	httpAddr := fs.String("http", "127.0.0.1:0", "each host serves its metrics (/metrics) and the cluster's dashboard (/) on `HOST:PORT`: port 0 picks free ones, a fixed port P gives h1 P, h2 P+1, ...; \"\" serves none")
	var err error
	fs.Usage = usageFunc(fs, env.stderr, "run [flags] [GUEST.wasm [ARGS...]]",
		"Runs a guest under fault tolerance on this machine: starts host processes (h1, h2, h3 by\n"+
			"default) sharing storage in a local directory, places the primary on h1 and the backup on\n"+
			"h2 (the others are spares), and prints every event until Ctrl-C, which stops the VM and the\n"+
			"hosts. Kill a host (kill -9 PID) to watch another take over and a new backup be cloned onto\n"+
			"a spare; a host that died is started again after a second, as a repaired server that\n"+
			"rejoins as a spare (--no-restart: not). A guest that ends by itself ends the run, with\n"+
			"its exit status (134 for a trap).\n\n"+
			"Without a guest it runs the embedded default: a TCP counter server (one line in, the new\n"+
			"count out; \"get\" reads it) on "+defaultListen+" (or --listen), persisting its count to\n"+
			"its virtual disk.")
	if err := fs.Parse(joinDiskKind(fs, args)); err != nil {
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(env.stderr, "ftvm run: %v\n", err)
		return 1
	}
	if *nHosts < 2 {
		fmt.Fprintf(env.stderr, "ftvm run: --hosts %d: a pair needs at least 2 hosts\n", *nHosts)
		return 2
	}
	if err := hf.check(); err != nil {
		fmt.Fprintf(env.stderr, "ftvm run: %v\n", err)
		return 2
	}
	runHosts := runHostNames(*nHosts)
	var spec storage.VMSpec
	var mod []byte
	if fs.NArg() == 0 {
		if *name == "" {
			*name = defaultguest.Name
		}
		if len(vf.listen) == 0 {
			vf.listen = listFlag{defaultListen}
		}
		if !vf.disk.on {
			vf.disk = diskFlag{on: true}
		}
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
			if h.Alive && slices.Contains(runHosts, h.Name) {
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
	fmt.Fprintf(out, "ftvm run: shared storage %s; starting hosts %s\n", dirPath, strings.Join(runHosts, ", "))
	spawned := time.Now()
	procs := map[string]*hostProc{}
	defer func() {
		for _, p := range procs {
			p.terminate()
		}
	}()
	exited := make(chan *hostProc, 2*len(runHosts))
	httpOf := func(n string) (string, error) { return hostHTTP(*httpAddr, runHosts, n) }
	for _, n := range runHosts {
		ha, err := httpOf(n)
		if err != nil {
			return fail(err)
		}
		p, err := spawnHost(exe, dirPath, n, ha, &hf, env.stdout, out, exited)
		if err != nil {
			return fail(err)
		}
		procs[n] = p
	}
	if err := waitRegistered(ctx, dir, runHosts, spawned, exited); err != nil {
		return fail(err)
	}
	spec.Primary, spec.Backup = runHosts[0], runHosts[1]
	if _, ran, err := dir.Latest(*name); err == nil && ran && spec.LocalDisk() {
		// A local disk run before: it starts on the host that ran it
		// last, whose copy is the latest.
		spec.Primary, spec.Backup = "", ""
	}
	stop := func() int {
		fmt.Fprintf(out, "ftvm run: stopping vm %s\n", *name)
		if err := host.StopVM(dir, *name); err != nil && !errors.Is(err, host.ErrAlreadyStopped) {
			fmt.Fprintf(out, "ftvm run: %v\n", err)
		}
		waitStopped(dir, *name, time.Second)
		return 0
	}
	if err := startAndWait(ctx, out, dir, spec, mod, 15*time.Second); err != nil {
		if _, ok := errors.AsType[*vmEnded](err); ok {
			// Not stopped: status keeps saying how it ended.
			fmt.Fprintf(out, "ftvm run: %v\n", err)
			return exitCodeOf(err)
		}
		code := stop()
		if ctx.Err() != nil {
			return code
		}
		return fail(err)
	}
	for _, n := range runHosts {
		fmt.Fprintf(out, "ftvm run: host %s is pid %d\n", n, procs[n].cmd.Process.Pid)
	}
	dashboards := map[string]string{}
	printDashboards(out, dir, runHosts, dashboards)
	fmt.Fprintf(out, "ftvm run: Ctrl-C stops everything; 'ftvm status --shared %s' shows the pair\n", *shared)
	restart := make(chan string, len(runHosts))
	alive := len(procs)
	watch := time.NewTicker(250 * time.Millisecond)
	defer watch.Stop()
	for alive > 0 || !*noRestart {
		select {
		case <-watch.C:
			if err := vmEnd(dir, *name); err != nil {
				fmt.Fprintf(out, "ftvm run: %v\n", err)
				return exitCodeOf(err)
			}
			printDashboards(out, dir, runHosts, dashboards) // of hosts started again
		case p := <-exited:
			alive--
			fmt.Fprintf(out, "ftvm run: host %s exited: %v\n", p.name, p.err)
			if !*noRestart {
				time.AfterFunc(restartDelay, func() { restart <- p.name })
			}
		case n := <-restart:
			ha, _ := httpOf(n) // it was valid at start
			p, err := spawnHost(exe, dirPath, n, ha, &hf, env.stdout, out, exited)
			if err != nil {
				fmt.Fprintf(out, "ftvm run: %v\n", err)
				continue
			}
			procs[n] = p
			alive++
			fmt.Fprintf(out, "ftvm run: host %s started again as a spare, pid %d\n", n, p.cmd.Process.Pid)
		case <-ctx.Done():
			return stop()
		}
	}
	return fail(fmt.Errorf("every host exited"))
}

// vmEnd returns a *vmEnded once VM name ended by itself: its guest exited
// or trapped, or it failed where it ran last.
func vmEnd(dir storage.Store, name string) error {
	vms, err := host.VMs(dir, time.Now())
	if err != nil {
		return nil
	}
	for _, v := range vms {
		if v.Name != name {
			continue
		}
		for _, st := range v.Hosts {
			if st.Host == v.Primary && st.Generation == v.Generation {
				return endOf(st)
			}
		}
	}
	return nil
}

// hostHTTP returns the --http address of host name of runHosts, given
// run's --http: "" for none; HOST:0 for each; from HOST:P, HOST:P+i for
// the i-th host.
func hostHTTP(base string, runHosts []string, name string) (string, error) {
	if base == "" {
		return "", nil
	}
	h, port, err := net.SplitHostPort(base)
	if err != nil {
		return "", fmt.Errorf("--http %q: %w", base, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p+len(runHosts) > 65536 {
		return "", fmt.Errorf("--http %q: bad port", base)
	}
	if p == 0 {
		return base, nil
	}
	return net.JoinHostPort(h, strconv.Itoa(p+slices.Index(runHosts, name))), nil
}

// printDashboards prints the dashboard and metrics addresses the hosts
// recorded in the registry, those not in shown (by host) yet, and adds
// them to it.
func printDashboards(w io.Writer, dir storage.Store, runHosts []string, shown map[string]string) {
	hs, err := dir.Hosts()
	if err != nil {
		return
	}
	for _, h := range hs {
		if h.HTTP != "" && slices.Contains(runHosts, h.Name) && shown[h.Name] != h.HTTP {
			shown[h.Name] = h.HTTP
			fmt.Fprintf(w, "ftvm run: host %s: dashboard http://%s/ metrics http://%s/metrics\n", h.Name, h.HTTP, h.HTTP)
		}
	}
}

// hostProc is a host daemon started by ftvm run.
type hostProc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func spawnHost(exe, shared, name, httpAddr string, hf *hostFlags, stdout io.Writer, events *lineWriter, exited chan<- *hostProc) (*hostProc, error) {
	// One VM: its output as it writes it.
	args := append([]string{"host", "--shared", shared, "--name", name, "--label-output=false"}, hf.args()...)
	if httpAddr != "" {
		args = append(args, "--http", httpAddr)
	}
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

func waitRegistered(ctx context.Context, dir storage.Store, runHosts []string, since time.Time, exited <-chan *hostProc) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		n := 0
		if hs, err := dir.Hosts(); err == nil {
			for _, h := range hs {
				if slices.Contains(runHosts, h.Name) && h.Started.After(since.Add(-time.Second)) && h.Seen.After(since) {
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

func waitStopped(dir storage.Store, vm string, max time.Duration) {
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
