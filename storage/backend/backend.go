// Package backend opens a storage.Store from where it is: a directory
// (the shared storage of one machine, or a shared file system), or an etcd
// cluster named by a URL, etcd://HOST:PORT[,HOST:PORT...][/PREFIX].
package backend

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"ftvm/storage"
	"ftvm/storage/etcdstore"
)

// Options are how to reach an etcd cluster; a directory needs none.
type Options struct {
	// CA, Cert and Key are PEM files: the CA that signed etcd's server
	// certificates, and this client's certificate and key, for TLS. With
	// none of them the connection is plain.
	CA, Cert, Key string
	// Username and Password authenticate to etcd, if set.
	Username, Password string
}

// IsEtcd reports whether location names an etcd cluster.
func IsEtcd(location string) bool { return strings.HasPrefix(location, "etcd://") }

// Open opens the store at location. A directory must exist unless create
// is set (a host may create the shared storage of a new cluster). The
// closer releases the store's connections.
func Open(location string, opts Options, create bool) (storage.Store, io.Closer, error) {
	if !IsEtcd(location) {
		if strings.Contains(location, "://") {
			return nil, nil, fmt.Errorf("store %q: only etcd:// URLs and directories are stores", location)
		}
		var d *storage.Dir
		var err error
		if create {
			d, err = storage.Open(location)
		} else {
			d, err = storage.OpenExisting(location)
		}
		if err != nil {
			return nil, nil, err
		}
		return d, io.NopCloser(nil), nil
	}
	cfg, err := EtcdConfig(location, opts)
	if err != nil {
		return nil, nil, err
	}
	s, err := etcdstore.Open(cfg)
	if err != nil {
		return nil, nil, err
	}
	return s, s, nil
}

// EtcdConfig returns the etcdstore configuration of an etcd:// URL.
func EtcdConfig(location string, opts Options) (etcdstore.Config, error) {
	rest := strings.TrimPrefix(location, "etcd://")
	hosts, prefix, _ := strings.Cut(rest, "/")
	var cfg etcdstore.Config
	for _, h := range strings.Split(hosts, ",") {
		if h == "" {
			return cfg, fmt.Errorf("store %q: an empty etcd endpoint", location)
		}
		cfg.Endpoints = append(cfg.Endpoints, h)
	}
	if prefix != "" {
		cfg.Prefix = "/" + strings.Trim(prefix, "/") + "/"
	}
	cfg.Username, cfg.Password = opts.Username, opts.Password
	if opts.CA == "" && opts.Cert == "" && opts.Key == "" {
		return cfg, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if opts.CA != "" {
		pem, err := os.ReadFile(opts.CA)
		if err != nil {
			return cfg, fmt.Errorf("etcd CA: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return cfg, fmt.Errorf("etcd CA %s: no certificate in it", opts.CA)
		}
	}
	if (opts.Cert == "") != (opts.Key == "") {
		return cfg, errors.New("etcd client certificate: give both the certificate and its key")
	}
	if opts.Cert != "" {
		c, err := tls.LoadX509KeyPair(opts.Cert, opts.Key)
		if err != nil {
			return cfg, fmt.Errorf("etcd client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{c}
	}
	cfg.TLS = tc
	for i, e := range cfg.Endpoints {
		if !strings.Contains(e, "://") {
			cfg.Endpoints[i] = "https://" + e
		}
	}
	return cfg, nil
}
