// wasi-rust is a Rust guest (wasm32-wasi standard library) for ftvm's WASI
// tests: it prints its arguments and an environment variable, works with
// files in a preopened directory, and, when FTVM_LISTEN_FDS names a
// listener, serves one connection: accepted by the standard library, then
// read with sock_recv, answered (reversed) with sock_send and shut down for
// writing with sock_shutdown, all three imported directly.
//
// Usage: wasi-rust DIR

use std::env;
use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::wasi::io::{AsRawFd, FromRawFd};

#[repr(C)]
struct Iovec {
    buf: *mut u8,
    len: usize,
}

#[repr(C)]
struct Ciovec {
    buf: *const u8,
    len: usize,
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn sock_recv(fd: i32, ri: *const Iovec, ri_len: i32, ri_flags: i32, ro_len: *mut u32, ro_flags: *mut u16) -> i32;
    fn sock_send(fd: i32, si: *const Ciovec, si_len: i32, si_flags: i32, so_len: *mut u32) -> i32;
    fn sock_shutdown(fd: i32, how: i32) -> i32;
}

fn recv(fd: i32, buf: &mut [u8]) -> Result<usize, i32> {
    let iov = Iovec { buf: buf.as_mut_ptr(), len: buf.len() };
    let mut n: u32 = 0;
    let mut flags: u16 = 0;
    let e = unsafe { sock_recv(fd, &iov, 1, 0, &mut n, &mut flags) };
    if e != 0 {
        return Err(e);
    }
    Ok(n as usize)
}

fn send(fd: i32, buf: &[u8]) -> Result<usize, i32> {
    let iov = Ciovec { buf: buf.as_ptr(), len: buf.len() };
    let mut n: u32 = 0;
    let e = unsafe { sock_send(fd, &iov, 1, 0, &mut n) };
    if e != 0 {
        return Err(e);
    }
    Ok(n as usize)
}

fn serve(fd: i32) -> Result<(), String> {
    let listener = unsafe { TcpListener::from_raw_fd(fd as _) };
    listener.set_nonblocking(false).map_err(|e| format!("set_nonblocking: {}", e))?;
    let (stream, _) = listener.accept().map_err(|e| format!("accept: {}", e))?;
    let cfd = stream.as_raw_fd() as i32;
    let mut buf = vec![0u8; 256];
    let mut n = 0;
    while n < buf.len() {
        let k = recv(cfd, &mut buf[n..]).map_err(|e| format!("sock_recv: errno {}", e))?;
        if k == 0 {
            break;
        }
        n += k;
        if buf[n - 1] == b'\n' {
            break;
        }
    }
    let mut line = &buf[..n];
    if line.ends_with(b"\n") {
        line = &line[..n - 1];
    }
    let mut reply = b"rust: ".to_vec();
    reply.extend(line.iter().rev());
    reply.push(b'\n');
    let mut off = 0;
    while off < reply.len() {
        off += send(cfd, &reply[off..]).map_err(|e| format!("sock_send: errno {}", e))?;
    }
    // The standard library of older toolchains does not implement
    // shutdown on WASI; call sock_shutdown (SHUT_WR is 2) directly.
    let e = unsafe { sock_shutdown(cfd, 2) };
    if e != 0 {
        return Err(format!("sock_shutdown: errno {}", e));
    }
    let mut rest = [0u8; 16];
    while recv(cfd, &mut rest).unwrap_or(0) > 0 {}
    println!("served {} bytes", n);
    Ok(())
}

fn run() -> Result<(), String> {
    for (i, a) in env::args().enumerate() {
        println!("arg {} {}", i, a);
    }
    println!("GREETING={}", env::var("GREETING").unwrap_or_else(|_| "(unset)".to_string()));
    let dir = env::args().nth(1).unwrap_or_else(|| "/data".to_string());
    let path = format!("{}/r.txt", dir);
    fs::write(&path, b"from Rust\n").map_err(|e| format!("write: {}", e))?;
    {
        let mut f = fs::OpenOptions::new().append(true).open(&path).map_err(|e| format!("open append: {}", e))?;
        f.write_all(b"appended\n").map_err(|e| format!("append: {}", e))?;
    }
    let text = fs::read_to_string(&path).map_err(|e| format!("read: {}", e))?;
    print!("read: {}", text);
    let md = fs::metadata(&path).map_err(|e| format!("metadata: {}", e))?;
    println!("size {}", md.len());
    let sub = format!("{}/rsub", dir);
    fs::create_dir(&sub).map_err(|e| format!("create_dir: {}", e))?;
    fs::rename(&path, format!("{}/moved.txt", sub)).map_err(|e| format!("rename: {}", e))?;
    let mut names: Vec<String> = fs::read_dir(&dir)
        .map_err(|e| format!("read_dir: {}", e))?
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    println!("list: {}", names.join(" "));
    fs::remove_dir_all(&sub).map_err(|e| format!("remove_dir_all: {}", e))?;
    match fs::read("/data/../../etc/passwd") {
        Ok(_) => return Err("escaped the preopen".to_string()),
        Err(_) => println!("escape refused"),
    }
    if let Ok(fds) = env::var("FTVM_LISTEN_FDS") {
        let fd: i32 = fds.split(',').next().unwrap().parse().map_err(|_| "bad FTVM_LISTEN_FDS".to_string())?;
        serve(fd)?;
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("wasi-rust: {}", e);
        std::process::exit(1);
    }
}
