// Package session provides sessions: byte-stream connections between a
// client and a VM's guest that survive the replacement of the host running
// the VM. Every byte is delivered exactly once and in order in both
// directions, across any number of broken connections and server
// replacements, as long as the host does its part (below).
//
// A host terminates sessions (Accept, then a ServerSession's Attach) and
// gives each guest its end as a net.Conn (ServerSession.Guest). A client
// calls Dial, which returns a net.Conn, or runs a Proxy for clients that
// speak plain TCP.
//
// # Protocol
//
// Version 1 runs over a reliable byte stream (TCP). A frame is
//
//	type     u8
//	length   u32, big-endian; at most MaxPayload (256 KiB)
//	payload  length bytes
//
// All integers are big-endian. An unknown type, an oversize or truncated
// frame, or a payload that does not parse (each type's size is fixed but
// for Open, Data and Refuse) is an error, after which the connection is
// dropped.
//
//	Hello    server → client  version u8, nonce [32]      first frame on every connection
//	Open     client → server  target (the rest)           "" is the VM's only listener
//	Opened   server → client  id [16], secret [32], window u32
//	Resume   client → server  id [16], received u64, sent u64, proof [32], target (the rest)
//	Resumed  server → client  consumed u64, window u32
//	Data     both ways        offset u64, bytes (the rest)
//	Ack      both ways        offset u64
//	Close    both ways        offset u64 (the stream's length)
//	Refuse   server → client  reason (the rest); the server then closes
//
// Each direction is a stream of bytes numbered from 0, ended by a Close.
// Positions count the bytes and, like TCP's FIN, the Close as one more:
// position n+1 of an n-byte stream means "all of it and its end". Acks,
// Resume's received and sent, and Resumed's consumed are positions; Data
// offsets and Close's offset are byte offsets.
//
// A target names what the session is for; its meaning is the host's (ftvm
// hosts take "VM" or "VM LISTENER"). A Resume repeats its session's
// target, so that a host serving many VMs finds the session without a
// table of every session it ever saw, and can tell "not yet here" (a
// failover in progress: it closes the connection, and the client retries)
// from "unknown" (a Refuse).
//
// The client's first frame after Hello is Open or Resume. A Resume's proof
// is HMAC-SHA256(secret, "ftvm-session-resume" ‖ nonce ‖ id ‖ received ‖
// sent) (Proof) over the nonce of the Hello on the same connection, so a
// recorded Resume is worthless elsewhere. received is the output the
// client has (its bytes; plus one for the Close only once the application
// consumed it, which makes it as good as the final Ack), sent the input it
// has sent in all (plus one if it closed). The server checks both against
// what it holds, answers with consumed, the input position it has (the
// client resends from there, and resends its Close if it closed), and
// resends output, and its Close, from received. A Close carries its
// stream's length, so a server restored at a position that counted the
// guest's EOF learns from the client's Close where the bytes ended.
//
// Data carries the bytes from its offset; a receiver drops what it has,
// and a gap is an error. An Ack from the client says it has the output
// before the offset (the server may forget it); one from the server that
// the input before the offset is safe (the client may forget it). Close
// half-closes its sender's direction. The session ends once both sides
// closed and each side's data and Close are acknowledged; the server then
// closes the connection. A client whose connection fails before that
// resumes once more to deliver its last Ack (a server that ended the
// session refuses it, which is as good).
//
// Each side sends an Ack (its position, perhaps again) when it has sent
// nothing for KeepaliveInterval, and takes a connection on which it heard
// nothing for IdleTimeout as broken: a frozen host or a cut network ends
// no TCP connection, and the client must go and resume elsewhere, the
// server detach a client that is gone.
//
// Windows bound memory. The server's window (sent in Opened and Resumed)
// bounds the input it buffers: a client sends at most that far past the
// server's last Ack, and more is a protocol error. The same window bounds
// the output the server retains: the guest's Write blocks while that much
// is unacknowledged. The client acknowledges output as the application
// reads it, so a client that does not read stops the guest. The client's
// own window (Config.Window) bounds the unacknowledged input it keeps.
//
// # What the host must do
//
// The exactly-once guarantee across a replacement holds only if the
// survivor can recreate, with RestoreServerSession, a session in the state
// the client may have seen. The host running the guest must:
//
//   - Log what the guest's Reads return (bytes and io.EOF), so the backup
//     knows the input position (State.Consumed) and can replay the guest.
//   - Call SafeInput only with input positions whose reads are logged and
//     acknowledged by the backup: the client drops input once acknowledged,
//     and input lost with the primary can then not be resent.
//   - Pass output to the guest's Write only once the backup has logged
//     everything the guest did before it (output commit): a survivor must
//     be able to regenerate, by replay, every byte a client may have
//     received, or the client's Resume is refused as out of range.
//   - Retain, at the backup, the guest's output from the client's last
//     acknowledgment on (OnClientAck tells the primary's host; it forwards
//     it), and restore the session from that: RestoreServerSession(id,
//     secret, window, consumed, outStart, retained, outClosed).
//   - Keep sessions by ID, Verify a Resume's proof with the session's
//     secret, Refuse unknown IDs, and end sessions whose client is gone
//     (Expired, End) — logging the end like any other event the guest
//     sees.
//
// # Client
//
// Dial opens a session and hides connection failures: it re-resolves the
// server (Config.Resolve), redials with backoff, resumes, and resends the
// input the server does not have. Only a refusal, a protocol error or no
// server resuming the session within Config.Timeout ends it with an error.
package session
