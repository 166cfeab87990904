package host

// SessionSecret is sessionSecret for the session tests.
var SessionSecret = sessionSecret
