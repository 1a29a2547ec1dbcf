//! wasm_sandbox_net.rs - outgoing TCP connections for Rust guests of wasm_sandbox.
//!
//! WASI preview1 cannot open connections, so the host opens them for the guest after checking
//! the sandbox's network policy (deny by default) and limits; the guest gets an ordinary
//! descriptor, here a `std::fs::File` that implements `Read` and `Write`.
//!
//! ```ignore
//! mod wasm_sandbox_net;
//! use std::io::{Read, Write};
//!
//! let mut conn = wasm_sandbox_net::tcp_connect("127.0.0.1", 8080)?;
//! conn.write_all(b"ping\n")?;
//! let mut reply = String::new();
//! conn.read_to_string(&mut reply)?;
//! ```
//!
//! Errors carry the WASI errno as `raw_os_error()`: EACCES (2) refused by the policy, ENFILE
//! (41) max_connections, EAGAIN (6) max_requests_per_second, EHOSTUNREACH (23), ECONNREFUSED
//! (14), ETIMEDOUT (73); on the connection EDQUOT (19) once an upload or download cap is used
//! up. Builds with Debian's rustc for wasm32-wasi.

#![allow(dead_code)] // a guest uses one of the two connects

use std::fs::File;
use std::io;
use std::os::wasi::io::FromRawFd;

#[link(wasm_import_module = "wasm_sandbox")]
extern "C" {
    #[link_name = "tcp_connect"]
    fn wasm_sandbox_tcp_connect(host: *const u8, host_len: usize, port: i32, fd_out: *mut i32)
        -> i32;
    #[link_name = "tls_connect"]
    fn wasm_sandbox_tls_connect(host: *const u8, host_len: usize, port: i32, fd_out: *mut i32)
        -> i32;
}

fn connected(rc: i32, fd: i32) -> io::Result<File> {
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(unsafe { File::from_raw_fd(fd as _) })
}

/// Connect to `host:port` (a name, an IPv4 address or a bracketed IPv6 address).
pub fn tcp_connect(host: &str, port: u16) -> io::Result<File> {
    let mut fd: i32 = -1;
    let rc = unsafe { wasm_sandbox_tcp_connect(host.as_ptr(), host.len(), i32::from(port), &mut fd) };
    connected(rc, fd)
}

/// Connect with TLS done by the host (it verifies the server's certificate and name against
/// the policy's trust store; ECONNABORTED (13) when they do not verify). Plaintext for the guest.
pub fn tls_connect(host: &str, port: u16) -> io::Result<File> {
    let mut fd: i32 = -1;
    let rc = unsafe { wasm_sandbox_tls_connect(host.as_ptr(), host.len(), i32::from(port), &mut fd) };
    connected(rc, fd)
}
