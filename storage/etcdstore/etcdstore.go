// Package etcdstore is the etcd backend of storage.Store: the arbiter, the
// registry and the VMs' records in an etcd cluster, for hosts on machines
// that share no file system.
//
// Keys live under a prefix (default "/ftvm/"):
//
//	cluster-key                      the cluster key (created once, by a transaction)
//	hosts/NAME                       a host's registry entry, under a lease
//	vms/NAME/spec                    a VM's spec
//	vms/NAME/module/meta             its module's size, chunk count and SHA-256
//	vms/NAME/module/NNNNNN           the module, in chunks under etcd's request limit
//	vms/NAME/owners/GGGGGGGGGGGGGGGGGGGG  the owner record of generation G
//	vms/NAME/status/HOST             HOST's status of the VM
//	events/HOST/TTTTTTTTTTTTTTTTTTTT     HOST's events, by time (the newest Config.EventsMax kept)
//	ports/PORT/VM                    VM's spec has, or had, a listener on PORT (see VMsOnPort)
//	ports-indexed                    every spec is in ports/ (set once it was built)
//
// Claim is a transaction that creates the generation's key only if it does
// not exist: of any number of hosts claiming a generation, exactly one
// wins, and the others read the winner's record. A host's registry entry
// is bound to a lease the store keeps alive while it refreshes the entry:
// a host that dies or is cut off from etcd loses its entry once the lease
// expires, with no comparison of clocks between machines.
package etcdstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"ftvm/storage"
)

// Defaults.
const (
	DefaultPrefix         = "/ftvm/"
	DefaultRequestTimeout = 2 * time.Second
	// DefaultHostTTL is the lease of a registry entry: a host gone that
	// long is gone.
	DefaultHostTTL = 3 * time.Second
	// chunkSize keeps each module chunk well under etcd's default request
	// limit (1.5 MiB).
	chunkSize = 1 << 20
	// DefaultEventsMax is how many events of each host are kept.
	DefaultEventsMax = 4096
)

// Config configures a Store.
type Config struct {
	// Endpoints are the etcd members' client URLs or HOST:PORTs.
	Endpoints []string
	// Prefix is the keys' prefix; "" means DefaultPrefix.
	Prefix string
	// TLS, if set, is the client's TLS configuration (client certificates,
	// the CA); Username and Password, if set, authenticate to etcd.
	TLS                *tls.Config
	Username, Password string
	// DialTimeout bounds the first connection; RequestTimeout each
	// operation (0: DefaultRequestTimeout).
	DialTimeout, RequestTimeout time.Duration
	// HostTTL is the lease of registry entries (0: DefaultHostTTL).
	HostTTL time.Duration
	// EventsMax is how many events of each host are kept (0:
	// DefaultEventsMax).
	EventsMax int
}

// Store is a storage.Store in etcd.
type Store struct {
	cli     *clientv3.Client
	prefix  string
	timeout time.Duration
	ttl     time.Duration
	keep    int // events per host

	mu        sync.Mutex
	reachable func() bool
	leases    map[string]clientv3.LeaseID // by host name, registered through this Store
	events    map[string]int              // appends per host since the last trim
}

var _ storage.Store = (*Store)(nil)

// Open connects to etcd.
func Open(cfg Config) (*Store, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcdstore: no endpoints")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if !strings.HasSuffix(cfg.Prefix, "/") {
		cfg.Prefix += "/"
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.HostTTL <= 0 {
		cfg.HostTTL = DefaultHostTTL
	}
	if cfg.EventsMax <= 0 {
		cfg.EventsMax = DefaultEventsMax
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: cfg.Endpoints, DialTimeout: cfg.DialTimeout, TLS: cfg.TLS,
		Username: cfg.Username, Password: cfg.Password,
	})
	if err != nil {
		return nil, fmt.Errorf("etcdstore: %w: %v", storage.ErrUnreachable, err)
	}
	return &Store{cli: cli, prefix: cfg.Prefix, timeout: cfg.RequestTimeout, ttl: cfg.HostTTL, keep: cfg.EventsMax,
		leases: make(map[string]clientv3.LeaseID), events: make(map[string]int)}, nil
}

// Close releases the connection; the leases it kept alive expire.
func (s *Store) Close() error { return s.cli.Close() }

func (s *Store) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.timeout)
}

// check fails while the failpoint says etcd is unreachable.
func (s *Store) check() error {
	s.mu.Lock()
	f := s.reachable
	s.mu.Unlock()
	if f != nil && !f() {
		return fmt.Errorf("etcd: %w (fault injected)", storage.ErrUnreachable)
	}
	return nil
}

// wrap reports a failed operation: whatever the cause, its outcome is
// unknown, so it is unreachable storage to the caller.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("etcd: %s: %w: %v", op, storage.ErrUnreachable, err)
}

// SetReachable installs the failpoint's check (see storage.Store).
func (s *Store) SetReachable(f func() bool) {
	s.mu.Lock()
	s.reachable = f
	s.mu.Unlock()
}

func (s *Store) key(parts ...string) string { return s.prefix + strings.Join(parts, "/") }

func genKey(gen uint64) string { return fmt.Sprintf("%020d", gen) }

// get reads one key; ok is false if it does not exist.
func (s *Store) get(op, key string) (b []byte, ok bool, err error) {
	if err := s.check(); err != nil {
		return nil, false, err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	r, err := s.cli.Get(ctx, key)
	if err != nil {
		return nil, false, wrap(op, err)
	}
	if len(r.Kvs) == 0 {
		return nil, false, nil
	}
	return r.Kvs[0].Value, true, nil
}

// list reads the keys under prefix, in key order.
func (s *Store) list(op, prefix string, opts ...clientv3.OpOption) ([]*kv, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	r, err := s.cli.Get(ctx, prefix, append([]clientv3.OpOption{clientv3.WithPrefix()}, opts...)...)
	if err != nil {
		return nil, wrap(op, err)
	}
	out := make([]*kv, len(r.Kvs))
	for i, x := range r.Kvs {
		out[i] = &kv{key: string(x.Key), value: x.Value, mod: x.ModRevision}
	}
	return out, nil
}

type kv struct {
	key   string
	value []byte
	mod   int64
}

func (s *Store) put(op, key string, v any, opts ...clientv3.OpOption) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.putRaw(op, key, b, opts...)
}

func (s *Store) putRaw(op, key string, b []byte, opts ...clientv3.OpOption) error {
	if err := s.check(); err != nil {
		return err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	_, err := s.cli.Put(ctx, key, string(b), opts...)
	return wrap(op, err)
}

// ClusterKey returns the cluster key, created by the first caller: a
// transaction puts it only if no one has. Anyone who can read the prefix
// can read it: etcd's own authentication (users and roles, TLS client
// certificates) is what protects it.
func (s *Store) ClusterKey() ([]byte, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	key := s.key("cluster-key")
	fresh := make([]byte, 32)
	rand.Read(fresh)
	val := hex.EncodeToString(fresh)
	ctx, cancel := s.ctx()
	defer cancel()
	r, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, val)).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return nil, wrap("cluster key", err)
	}
	if !r.Succeeded {
		kvs := r.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			return nil, fmt.Errorf("etcd: cluster key vanished: %w", storage.ErrUnreachable)
		}
		val = string(kvs[0].Value)
	}
	b, err := hex.DecodeString(val)
	if err != nil || len(b) < 16 {
		return nil, fmt.Errorf("etcd: cluster key %s does not decode", key)
	}
	return b, nil
}

// Claim creates generation o.Generation's owner record of vm only if it
// does not exist (see storage.Store).
func (s *Store) Claim(vm string, o storage.Owner) (bool, storage.Owner, error) {
	if err := storage.CheckName("vm", vm); err != nil {
		return false, storage.Owner{}, err
	}
	if err := s.check(); err != nil {
		return false, storage.Owner{}, err
	}
	if o.Time.IsZero() {
		o.Time = time.Now().UTC()
	}
	b, err := json.Marshal(o)
	if err != nil {
		return false, storage.Owner{}, err
	}
	key := s.key("vms", vm, "owners", genKey(o.Generation))
	ctx, cancel := s.ctx()
	defer cancel()
	r, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(b))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return false, storage.Owner{}, wrap("claim", err)
	}
	if r.Succeeded {
		return true, o, nil
	}
	kvs := r.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return false, storage.Owner{}, fmt.Errorf("etcd: claim of %s generation %d vanished: %w", vm, o.Generation, storage.ErrUnreachable)
	}
	var cur storage.Owner
	if err := json.Unmarshal(kvs[0].Value, &cur); err != nil {
		return false, storage.Owner{}, fmt.Errorf("etcd: owner record %s/%d: %w", vm, o.Generation, err)
	}
	// A retry of one's own claim (its answer lost) is a win.
	return cur.Host == o.Host, cur, nil
}

// Owner returns generation gen's owner record of vm.
func (s *Store) Owner(vm string, gen uint64) (storage.Owner, bool, error) {
	b, ok, err := s.get("read owner", s.key("vms", vm, "owners", genKey(gen)))
	if err != nil || !ok {
		return storage.Owner{}, false, err
	}
	var o storage.Owner
	if err := json.Unmarshal(b, &o); err != nil {
		return storage.Owner{}, false, fmt.Errorf("etcd: owner record %s/%d: %w", vm, gen, err)
	}
	return o, true, nil
}

// Latest returns vm's newest owner record.
func (s *Store) Latest(vm string) (storage.Owner, bool, error) {
	kvs, err := s.list("list owners", s.key("vms", vm, "owners")+"/",
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(1))
	if err != nil || len(kvs) == 0 {
		return storage.Owner{}, false, err
	}
	var o storage.Owner
	if err := json.Unmarshal(kvs[0].value, &o); err != nil {
		return storage.Owner{}, false, fmt.Errorf("etcd: owner record %s: %w", kvs[0].key, err)
	}
	return o, true, nil
}

// PutHost registers or refreshes host h under its lease, granting one (and
// keeping it alive) on the first registration through this Store, or when
// the last one expired.
func (s *Store) PutHost(h storage.HostInfo) error {
	if err := storage.CheckName("host", h.Name); err != nil {
		return err
	}
	if err := s.check(); err != nil {
		return err
	}
	id, err := s.lease(h.Name)
	if err != nil {
		return err
	}
	return s.put("register host", s.key("hosts", h.Name), h, clientv3.WithLease(id))
}

// lease returns the live lease of host name's registry entry.
func (s *Store) lease(name string) (clientv3.LeaseID, error) {
	s.mu.Lock()
	id, ok := s.leases[name]
	s.mu.Unlock()
	if ok {
		return id, nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	g, err := s.cli.Grant(ctx, int64((s.ttl+time.Second-1)/time.Second))
	if err != nil {
		return 0, wrap("grant lease", err)
	}
	ch, err := s.cli.KeepAlive(context.Background(), g.ID)
	if err != nil {
		return 0, wrap("keep lease alive", err)
	}
	s.mu.Lock()
	s.leases[name] = g.ID
	s.mu.Unlock()
	go func() {
		for range ch {
		}
		// The lease expired or the client closed: the next PutHost
		// grants a new one.
		s.mu.Lock()
		if s.leases[name] == g.ID {
			delete(s.leases, name)
		}
		s.mu.Unlock()
	}()
	return g.ID, nil
}

// Hosts returns the registered hosts whose leases are alive, by name. An
// entry is there only while its host's lease lives, so each is stamped
// as seen now, by the reader's clock: readers that judge liveness by
// HostInfo.Seen then never compare their clock with another machine's.
func (s *Store) Hosts() ([]storage.HostInfo, error) {
	kvs, err := s.list("list hosts", s.key("hosts")+"/")
	if err != nil {
		return nil, err
	}
	var out []storage.HostInfo
	for _, x := range kvs {
		var h storage.HostInfo
		if json.Unmarshal(x.value, &h) == nil {
			h.Seen = time.Now().UTC()
			out = append(out, h)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// moduleMeta describes a module stored in chunks.
type moduleMeta struct {
	Size   int    `json:"size"`
	Chunks int    `json:"chunks"`
	SHA256 string `json:"sha256"`
}

// PutVM stores a VM's spec and, if not nil, its module: the chunks first,
// then their description, then the spec, so a reader that finds the spec
// finds the module complete (checked by its SHA-256).
func (s *Store) PutVM(spec storage.VMSpec, module []byte) error {
	if err := storage.CheckName("vm", spec.Name); err != nil {
		return err
	}
	if module != nil {
		for i := 0; i*chunkSize < len(module) || i == 0; i++ {
			chunk := module[i*chunkSize : min((i+1)*chunkSize, len(module))]
			if err := s.putRaw("write module", s.key("vms", spec.Name, "module", fmt.Sprintf("%06d", i)), chunk); err != nil {
				return err
			}
		}
		sum := sha256.Sum256(module)
		meta := moduleMeta{Size: len(module), Chunks: max(1, (len(module)+chunkSize-1)/chunkSize), SHA256: hex.EncodeToString(sum[:])}
		if err := s.put("write module", s.key("vms", spec.Name, "module", "meta"), meta); err != nil {
			return err
		}
	}
	// The ports' index first (see VMsOnPort): a spec is never there
	// without its entries.
	for _, p := range storage.ListenerPorts(spec) {
		if err := s.putRaw("index listener ports", s.key("ports", strconv.Itoa(p), spec.Name), nil); err != nil {
			return err
		}
	}
	return s.put("write vm spec", s.key("vms", spec.Name, "spec"), spec)
}

// VMsOnPort returns the VMs whose spec has, or once had, a listener on
// port, from the index ports/PORT/VM that PutVM keeps. A cluster written
// before the index existed gets it built at the first use
// (ports-indexed marks it complete).
func (s *Store) VMsOnPort(port int) ([]string, error) {
	_, ok, err := s.get("read ports index", s.key("ports-indexed"))
	if err != nil {
		return nil, err
	}
	if !ok {
		if err := s.buildPortIndex(); err != nil {
			return nil, err
		}
	}
	dir := s.key("ports", strconv.Itoa(port)) + "/"
	kvs, err := s.list("list port users", dir, clientv3.WithKeysOnly())
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(kvs))
	for _, x := range kvs {
		names = append(names, strings.TrimPrefix(x.key, dir))
	}
	return names, nil
}

// buildPortIndex indexes every spec (read one at a time: a listing with
// values would carry every module), then marks the index complete.
func (s *Store) buildPortIndex() error {
	names, err := s.VMs()
	if err != nil {
		return err
	}
	for _, name := range names {
		spec, err := s.VM(name)
		if errors.Is(err, storage.ErrUnreachable) {
			return err
		}
		if err != nil {
			continue // gone, or Unreadable lists it; nothing runs it
		}
		for _, p := range storage.ListenerPorts(spec) {
			if err := s.putRaw("index listener ports", s.key("ports", strconv.Itoa(p), name), nil); err != nil {
				return err
			}
		}
	}
	return s.putRaw("index listener ports", s.key("ports-indexed"), nil)
}

// VM returns a VM's spec.
func (s *Store) VM(name string) (storage.VMSpec, error) {
	if err := storage.CheckName("vm", name); err != nil {
		return storage.VMSpec{}, err
	}
	b, ok, err := s.get("read vm spec", s.key("vms", name, "spec"))
	if err != nil {
		return storage.VMSpec{}, err
	}
	if !ok {
		return storage.VMSpec{}, fmt.Errorf("etcd: no vm %q: %w", name, fs.ErrNotExist)
	}
	var spec storage.VMSpec
	if err := json.Unmarshal(b, &spec); err != nil {
		return storage.VMSpec{}, fmt.Errorf("etcd: vm %s spec: %w", name, err)
	}
	return spec, nil
}

// Module returns a VM's module, checked against its SHA-256.
func (s *Store) Module(name string) ([]byte, error) {
	if err := storage.CheckName("vm", name); err != nil {
		return nil, err
	}
	b, ok, err := s.get("read module", s.key("vms", name, "module", "meta"))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("etcd: vm %q has no module: %w", name, fs.ErrNotExist)
	}
	var meta moduleMeta
	if err := json.Unmarshal(b, &meta); err != nil {
		return nil, fmt.Errorf("etcd: vm %s module: %w", name, err)
	}
	mod := make([]byte, 0, meta.Size)
	for i := range meta.Chunks {
		c, ok, err := s.get("read module", s.key("vms", name, "module", fmt.Sprintf("%06d", i)))
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("etcd: vm %s module: chunk %d missing", name, i)
		}
		mod = append(mod, c...)
	}
	if sum := sha256.Sum256(mod); len(mod) != meta.Size || hex.EncodeToString(sum[:]) != meta.SHA256 {
		return nil, fmt.Errorf("etcd: vm %s module: %d bytes that do not match their SHA-256 (a module being replaced?)", name, len(mod))
	}
	return mod, nil
}

// VMs returns the names of the VMs with a spec, sorted.
func (s *Store) VMs() ([]string, error) {
	kvs, err := s.list("list vms", s.key("vms")+"/", clientv3.WithKeysOnly())
	if err != nil {
		return nil, err
	}
	var names []string
	for _, x := range kvs {
		rest := strings.TrimPrefix(x.key, s.key("vms")+"/")
		if name, sub, ok := strings.Cut(rest, "/"); ok && sub == "spec" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names, nil
}

// DiskDir has no meaning without a shared file system: "" (see
// storage.Store).
func (s *Store) DiskDir(string) string { return "" }

// PutStatus records a host's status of a VM.
func (s *Store) PutStatus(st storage.VMStatus) error {
	if err := storage.CheckName("vm", st.VM); err != nil {
		return err
	}
	if err := storage.CheckName("host", st.Host); err != nil {
		return err
	}
	return s.put("write status", s.key("vms", st.VM, "status", st.Host), st)
}

// maxTxnOps is etcd's default limit on the operations of a transaction
// (--max-txn-ops).
const maxTxnOps = 128

// PutStatuses records several statuses, in transactions of up to
// maxTxnOps puts, each as PutStatus writes it. A status with an invalid
// name is refused; the others are still written.
func (s *Store) PutStatuses(sts []storage.VMStatus) error {
	var errs []error
	var ops []clientv3.Op
	at := make(map[string]int) // ops' index by key
	commit := func() {
		if len(ops) == 0 {
			return
		}
		if err := s.check(); err != nil {
			errs = append(errs, err)
		} else {
			ctx, cancel := s.ctx()
			_, err := s.cli.Txn(ctx).Then(ops...).Commit()
			cancel()
			if err != nil {
				errs = append(errs, wrap(fmt.Sprintf("write %d statuses", len(ops)), err))
			}
		}
		ops = nil
		clear(at)
	}
	for _, st := range sts {
		if err := storage.CheckName("vm", st.VM); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := storage.CheckName("host", st.Host); err != nil {
			errs = append(errs, err)
			continue
		}
		b, err := json.Marshal(st)
		if err != nil {
			errs = append(errs, fmt.Errorf("etcd: status of %s on %s: %w", st.VM, st.Host, err))
			continue
		}
		key := s.key("vms", st.VM, "status", st.Host)
		op := clientv3.OpPut(key, string(b))
		// etcd refuses a transaction that puts a key twice; the later
		// status is the one PutStatus in turn would have left.
		if i, ok := at[key]; ok {
			ops[i] = op
			continue
		}
		at[key] = len(ops)
		ops = append(ops, op)
		if len(ops) == maxTxnOps {
			commit()
		}
	}
	commit()
	return errors.Join(errs...)
}

// Statuses returns every host's status of vm, by host.
func (s *Store) Statuses(vm string) ([]storage.VMStatus, error) {
	kvs, err := s.list("list statuses", s.key("vms", vm, "status")+"/")
	if err != nil {
		return nil, err
	}
	var out []storage.VMStatus
	for _, x := range kvs {
		var st storage.VMStatus
		if json.Unmarshal(x.value, &st) == nil {
			out = append(out, st)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Host < out[j].Host })
	return out, nil
}

// AppendEvent adds e to its host's events, keeping the newest
// Config.EventsMax.
func (s *Store) AppendEvent(e storage.Event) error {
	if err := storage.CheckName("host", e.Host); err != nil {
		return err
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	prefix := s.key("events", e.Host) + "/"
	if err := s.put("append event", prefix+fmt.Sprintf("%020d", e.Time.UnixNano()), e); err != nil {
		return err
	}
	s.mu.Lock()
	s.events[e.Host]++
	trim := s.events[e.Host] >= max(s.keep/8, 1)
	if trim {
		s.events[e.Host] = 0
	}
	s.mu.Unlock()
	if trim {
		return s.trimEvents(prefix)
	}
	return nil
}

// AppendEvents is AppendEvent for each of es, in order.
func (s *Store) AppendEvents(es []storage.Event) error {
	var errs []error
	for _, e := range es {
		errs = append(errs, s.AppendEvent(e))
	}
	return errors.Join(errs...)
}

// trimEvents deletes a host's events beyond the newest s.keep.
func (s *Store) trimEvents(prefix string) error {
	kvs, err := s.list("trim events", prefix, clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(int64(s.keep)+1))
	if err != nil || len(kvs) <= s.keep {
		return err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	// Everything from the prefix up to and including the oldest kept
	// one's predecessor.
	_, err = s.cli.Delete(ctx, prefix, clientv3.WithRange(kvs[s.keep].key+"\x00"))
	return wrap("trim events", err)
}

// Events returns every host's events, oldest first.
func (s *Store) Events() ([]storage.Event, error) {
	kvs, err := s.list("read events", s.key("events")+"/")
	if err != nil {
		return nil, err
	}
	var out []storage.Event
	for _, x := range kvs {
		var e storage.Event
		if json.Unmarshal(x.value, &e) == nil {
			out = append(out, e)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

// EventsStamp changes whenever the events do: their count and newest
// revision.
func (s *Store) EventsStamp() (string, error) {
	if err := s.check(); err != nil {
		return "", err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	prefix := s.key("events") + "/"
	n, err := s.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return "", wrap("events", err)
	}
	r, err := s.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend), clientv3.WithLimit(1))
	if err != nil {
		return "", wrap("events", err)
	}
	var rev int64
	if len(r.Kvs) > 0 {
		rev = r.Kvs[0].ModRevision
	}
	return fmt.Sprintf("%d/%d", n.Count, rev), nil
}

// Unreadable returns the records that do not decode.
func (s *Store) Unreadable() ([]string, error) {
	var out []string
	for _, prefix := range []string{s.key("hosts") + "/", s.key("vms") + "/"} {
		kvs, err := s.list("check records", prefix)
		if err != nil {
			return nil, err
		}
		for _, x := range kvs {
			if strings.Contains(x.key, "/module/") && !strings.HasSuffix(x.key, "/meta") {
				continue // module chunks are bytes
			}
			var v map[string]any
			if err := json.Unmarshal(x.value, &v); err != nil {
				out = append(out, fmt.Sprintf("%s: %v", strings.TrimPrefix(x.key, s.prefix), err))
			}
		}
	}
	return out, nil
}
