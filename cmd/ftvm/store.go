package main

import (
	"errors"
	"flag"
	"io"
	"os"

	"ftvm/storage"
	"ftvm/storage/backend"
)

// storeFlags name where the cluster's shared storage is: a directory
// (--shared DIR), or an etcd cluster (--store etcd://HOST:PORT,...), with
// how to reach it. etcd's password comes from $FTVM_ETCD_PASSWORD, which
// the process list does not show.
type storeFlags struct {
	shared, store       string
	ca, cert, key, user string
	// resolved is the store's location once resolve ran.
	resolved string
}

// resolve checks the flags after parsing and sets resolved.
func (f *storeFlags) resolve() error {
	loc, err := f.location()
	f.resolved = loc
	return err
}

// addStoreFlags registers the storage flags on fs.
func addStoreFlags(fs *flag.FlagSet) *storeFlags {
	f := &storeFlags{}
	fs.StringVar(&f.shared, "shared", "", "shared storage `DIR` (or --store)")
	fs.StringVar(&f.store, "store", "", "the cluster's store: `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`, or a directory (as --shared)")
	fs.StringVar(&f.ca, "etcd-ca", "", "etcd over TLS: the `PEM` file of the CA of etcd's certificates")
	fs.StringVar(&f.cert, "etcd-cert", "", "etcd over TLS: this client's certificate (`PEM`)")
	fs.StringVar(&f.key, "etcd-key", "", "etcd over TLS: this client's key (`PEM`)")
	fs.StringVar(&f.user, "etcd-user", "", "etcd user `NAME` (its password in $FTVM_ETCD_PASSWORD)")
	return f
}

// location returns where the store is; "" if neither flag was given.
func (f *storeFlags) location() (string, error) {
	if f.shared != "" && f.store != "" {
		return "", errors.New("give --shared or --store, not both")
	}
	if f.store != "" {
		return f.store, nil
	}
	return f.shared, nil
}

func (f *storeFlags) options() backend.Options {
	return backend.Options{CA: f.ca, Cert: f.cert, Key: f.key, Username: f.user, Password: os.Getenv("FTVM_ETCD_PASSWORD")}
}

// open opens the store; a directory must exist unless create is set.
func (f *storeFlags) open(create bool) (storage.Store, io.Closer, error) {
	loc, err := f.location()
	if err != nil {
		return nil, nil, err
	}
	if loc == "" {
		return nil, nil, errors.New("--shared DIR or --store URL is required")
	}
	return backend.Open(loc, f.options(), create)
}
