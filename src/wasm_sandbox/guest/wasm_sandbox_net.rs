// wasm_sandbox_net.rs - outgoing TCP connections for Rust guests of wasm_sandbox.
//
// WASI preview1 cannot open connections, so the host opens them for the guest after checking
// the sandbox's network policy (deny by default) and limits; the guest gets an ordinary
// descriptor, here a `std::fs::File` that implements `Read` and `Write`.
//
// USE IT in one of two ways (a source given to wasm_sandbox's `.source()` finds this file next
// to it; elsewhere, copy it there or name it with `#[path = "..."]`):
//
//   mod wasm_sandbox_net;                 // as a module: wasm_sandbox_net::tcp_connect(...)
//   use std::io::{Read, Write};
//
//   let mut conn = wasm_sandbox_net::tcp_connect("127.0.0.1", 8080)?;
//   conn.write_all(b"ping\n")?;
//   let mut reply = String::new();
//   conn.read_to_string(&mut reply)?;
//
// or `include!("wasm_sandbox_net.rs");`, which puts `tcp_connect`, `tls_connect`,
// `http_request` and `HttpResponse` in the including module (the file has no `use` and no
// inner attributes, so it adds no other name there but its private `__wsbx_net_*` helpers).
//
// Errors carry the WASI errno as `raw_os_error()`: EACCES (2) refused by the policy, ENFILE
// (41) max_connections, EAGAIN (6) max_requests_per_second, EHOSTUNREACH (23), ECONNREFUSED
// (14), ETIMEDOUT (73); on the connection EDQUOT (19) once an upload or download cap is used
// up. Builds with Debian's rustc for wasm32-wasi.

#[link(wasm_import_module = "wasm_sandbox")]
extern "C" {
    #[link_name = "tcp_connect"]
    fn wasm_sandbox_tcp_connect(host: *const u8, host_len: usize, port: i32, fd_out: *mut i32)
        -> i32;
    #[link_name = "tls_connect"]
    fn wasm_sandbox_tls_connect(host: *const u8, host_len: usize, port: i32, fd_out: *mut i32)
        -> i32;
}

#[allow(dead_code)]
fn __wsbx_net_connected(rc: i32, fd: i32) -> ::std::io::Result<::std::fs::File> {
    use std::os::wasi::io::FromRawFd;
    if rc != 0 {
        return Err(::std::io::Error::from_raw_os_error(rc));
    }
    Ok(unsafe { ::std::fs::File::from_raw_fd(fd as _) })
}

/// Connect to `host:port` (a name, an IPv4 address or a bracketed IPv6 address).
#[allow(dead_code)]
pub fn tcp_connect(host: &str, port: u16) -> ::std::io::Result<::std::fs::File> {
    let mut fd: i32 = -1;
    let rc = unsafe { wasm_sandbox_tcp_connect(host.as_ptr(), host.len(), i32::from(port), &mut fd) };
    __wsbx_net_connected(rc, fd)
}

/// Connect with TLS done by the host (it verifies the server's certificate and name against
/// the policy's trust store; ECONNABORTED (13) when they do not verify). Plaintext for the guest.
#[allow(dead_code)]
pub fn tls_connect(host: &str, port: u16) -> ::std::io::Result<::std::fs::File> {
    let mut fd: i32 = -1;
    let rc = unsafe { wasm_sandbox_tls_connect(host.as_ptr(), host.len(), i32::from(port), &mut fd) };
    __wsbx_net_connected(rc, fd)
}

/// An HTTP response: status, headers (names as sent), body.
#[allow(dead_code)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[allow(dead_code)]
impl HttpResponse {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[allow(dead_code)]
fn __wsbx_net_invalid(message: &str) -> ::std::io::Error {
    ::std::io::Error::new(::std::io::ErrorKind::InvalidInput, message.to_string())
}

/// One HTTP/1.0 request to an `http://` or `https://` URL over `tcp_connect` / `tls_connect`
/// (the host's policy and limits apply; https is verified by the host).
#[allow(dead_code)]
pub fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> ::std::io::Result<HttpResponse> {
    use std::io::{Read, Write};
    let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(__wsbx_net_invalid("only http:// and https:// URLs"));
    };
    let split = rest.find(|c| c == '/' || c == '?' || c == '#').unwrap_or(rest.len());
    let (hostport, path) = (&rest[..split], if split < rest.len() { &rest[split..] } else { "/" });
    let (host, port) = match hostport.rfind(':') {
        Some(i) if !hostport[i..].contains(']') => {
            let port = hostport[i + 1..].parse::<u16>().map_err(|_| __wsbx_net_invalid("bad port"))?;
            (&hostport[..i], port)
        }
        _ => (hostport, if tls { 443 } else { 80 }),
    };
    if host.is_empty() {
        return Err(__wsbx_net_invalid("no host in the URL"));
    }
    let mut conn = if tls { tls_connect(host, port)? } else { tcp_connect(host, port)? };
    let mut request = format!("{} {} HTTP/1.0\r\nHost: {}\r\nConnection: close\r\n", method, path, hostport);
    for (name, value) in headers {
        if name.contains(['\r', '\n']) || value.contains(['\r', '\n']) {
            return Err(__wsbx_net_invalid("header names and values cannot contain line breaks"));
        }
        request.push_str(&format!("{}: {}\r\n", name, value));
    }
    if !body.is_empty() {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    conn.write_all(request.as_bytes())?;
    conn.write_all(body)?;
    let mut data = Vec::new();
    conn.read_to_end(&mut data)?;
    let end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| __wsbx_net_invalid("the answer is not HTTP"))?;
    let head = String::from_utf8_lossy(&data[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| __wsbx_net_invalid("the answer is not HTTP"))?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(HttpResponse { status, headers, body: data[end + 4..].to_vec() })
}
