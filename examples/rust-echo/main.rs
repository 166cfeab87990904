// rust-echo is a TCP echo server written as an ftvm guest in Rust, with the
// standard library alone: it sends every client back what the client sends,
// on the first listener ftvm hands it (FTVM_LISTEN_FDS).
//
// WASI preview 1 has no threads, and Rust's standard library has no way to
// wait for several sockets, so the sockets are non-blocking and the program
// waits in WASI's poll_oneoff, imported directly: one loop serves every
// client.
//
// Build and run:
//
//   rustc --target wasm32-wasi -O -o rust-echo.wasm main.rs
//   ftvm run --listen 127.0.0.1:7002 rust-echo.wasm

use std::env;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::wasi::io::{AsRawFd, FromRawFd};
use std::process;

// poll_oneoff's structures, laid out as WASI preview 1 defines them.
const EVENTTYPE_FD_READ: u8 = 1;
const EVENTTYPE_FD_WRITE: u8 = 2;

#[repr(C)]
struct Subscription {
    userdata: u64,
    tag: u8,
    _pad: [u8; 7],
    fd: u32,
    _rest: [u8; 28],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Event {
    userdata: u64,
    error: u16,
    kind: u8,
    _pad: [u8; 5],
    nbytes: u64,
    flags: u16,
    _pad2: [u8; 6],
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn poll_oneoff(subs: *const Subscription, events: *mut Event, n: u32, nevents: *mut u32) -> u16;
}

fn subscribe(userdata: u64, tag: u8, fd: i32) -> Subscription {
    Subscription { userdata, tag, _pad: [0; 7], fd: fd as u32, _rest: [0; 28] }
}

// wait blocks until at least one subscription is ready and returns the
// userdata of each that is.
fn wait(subs: &[Subscription]) -> io::Result<Vec<u64>> {
    let empty = Event { userdata: 0, error: 0, kind: 0, _pad: [0; 5], nbytes: 0, flags: 0, _pad2: [0; 6] };
    let mut events = vec![empty; subs.len()];
    let mut n: u32 = 0;
    let errno = unsafe { poll_oneoff(subs.as_ptr(), events.as_mut_ptr(), subs.len() as u32, &mut n) };
    if errno != 0 {
        return Err(io::Error::from_raw_os_error(errno as i32));
    }
    Ok(events[..n as usize].iter().map(|e| e.userdata).collect())
}

struct Client {
    stream: TcpStream,
    pending: Vec<u8>, // received, not yet sent back
}

// serve reads what the client sent and sends it back. It returns false once
// the client is gone (its end of input, or an error such as the reset every
// connection sees when a backup takes over).
fn serve(c: &mut Client) -> bool {
    if c.pending.is_empty() {
        let mut buf = [0u8; 4096];
        match c.stream.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => c.pending.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
    match c.stream.write(&c.pending) {
        Ok(k) => {
            c.pending.drain(..k);
            true
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
        Err(_) => false,
    }
}

// listener returns the first listener in FTVM_LISTEN_FDS. It is not at a
// fixed descriptor: preopened directories such as /disk come first.
fn listener() -> TcpListener {
    let fds = env::var("FTVM_LISTEN_FDS").unwrap_or_default();
    let fd: i32 = match fds.split(',').next().unwrap_or("").parse() {
        Ok(fd) => fd,
        Err(_) => {
            eprintln!("rust-echo: no listener in FTVM_LISTEN_FDS (run it with ftvm run --listen ADDR)");
            process::exit(2);
        }
    };
    unsafe { TcpListener::from_raw_fd(fd) }
}

fn main() {
    let listener = listener();
    if let Err(e) = listener.set_nonblocking(true) {
        eprintln!("rust-echo: listener: {}", e);
        process::exit(1);
    }
    println!("rust-echo: serving");
    let mut clients: Vec<Client> = Vec::new();
    let mut served: u64 = 0; // connections accepted so far
    const LISTENER: u64 = u64::MAX;
    loop {
        let mut subs = vec![subscribe(LISTENER, EVENTTYPE_FD_READ, listener.as_raw_fd())];
        for (i, c) in clients.iter().enumerate() {
            // Wait to send what is left before reading more: a client
            // that does not read its echo gets nothing more read.
            let tag = if c.pending.is_empty() { EVENTTYPE_FD_READ } else { EVENTTYPE_FD_WRITE };
            subs.push(subscribe(i as u64, tag, c.stream.as_raw_fd()));
        }
        let ready = match wait(&subs) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("rust-echo: poll_oneoff: {}", e);
                process::exit(1);
            }
        };
        let mut ready_clients: Vec<usize> = ready.iter().filter(|&&u| u != LISTENER).map(|&u| u as usize).collect();
        // From the last: swap_remove moves the last client into the freed
        // slot, which is then done already.
        ready_clients.sort_unstable();
        for &i in ready_clients.iter().rev() {
            if !serve(&mut clients[i]) {
                clients.swap_remove(i);
            }
        }
        if ready.contains(&LISTENER) {
            loop {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if stream.set_nonblocking(true).is_err() {
                            continue;
                        }
                        served += 1;
                        println!("rust-echo: connection {}", served);
                        clients.push(Client { stream, pending: Vec::new() });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        eprintln!("rust-echo: accept: {}", e);
                        break;
                    }
                }
            }
        }
    }
}
