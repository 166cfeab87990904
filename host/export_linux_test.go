package host

// ReusePortListen is reusePortListen for the cluster tests.
var ReusePortListen = reusePortListen
