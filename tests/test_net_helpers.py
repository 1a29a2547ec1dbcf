"""The shipped network glue for compiled guests: ``wasm_sandbox_net.h`` (C: connect, TLS,
``wsbx_http_request``) and ``wasm_sandbox_net.rs`` (Rust: ``http_request``), against real
HTTP and HTTPS servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import wasm_sandbox as ws
from tests.conftest import SHIPPED_GLUE
from tests.netservers import http_server, https_server

RUST_MAIN = """
#[path = "{module}"]
mod wasm_sandbox_net;

fn main() {{
    let url = std::env::args().nth(1).expect("usage: net_http URL");
    match wasm_sandbox_net::http_request("GET", &url, &[("Accept", "*/*")], b"") {{
        Ok(r) => println!(
            "{{}} {{}}\\n{{}}",
            r.status,
            r.header("content-type").unwrap_or("-"),
            String::from_utf8_lossy(&r.body)
        ),
        Err(e) => println!("error {{:?}}", e.raw_os_error()),
    }}
}}
"""


def test_c_http_helper_over_http_and_https(c_guest: Callable[[str], Path], tmp_path: Path) -> None:
    """The shipped C HTTP helper GETs over HTTP and HTTPS (the policy's CA), reports the server's
    status for a POST, EACCES without a policy and EINVAL for another scheme; only the allowed
    requests reach the server."""
    wasm = c_guest("net_http")
    with http_server() as plain, https_server(tmp_path) as secure:
        policy = ws.NetworkPolicy(
            allow=(f"127.0.0.1:{plain.port}", f"localhost:{secure.port}"), ca_file=secure.ca_file
        )
        sandbox = ws.WasmSandbox.builder().source(wasm).network_policy(policy).build()
        got = sandbox.run(args=["GET", f"http://127.0.0.1:{plain.port}/hello"])
        assert got.stdout == b"200 text/plain\nhello\n"
        got = sandbox.run(args=["GET", f"https://localhost:{secure.port}/hello"])
        assert got.stdout == b"200 text/plain\nhello\n"
        posted = sandbox.run(args=["POST", f"http://127.0.0.1:{plain.port}/hello", "data"])
        assert posted.stdout.startswith(b"501 ")  # the test server only speaks GET
        denied = ws.WasmSandbox.builder().source(wasm).build()
        assert denied.run(args=["GET", f"http://127.0.0.1:{plain.port}/hello"]).stdout == (
            b"errno EACCES\n"
        )
        assert sandbox.run(args=["GET", "ftp://example.com/"]).stdout == b"errno EINVAL\n"
        assert plain.paths == ["/hello"]


def test_rust_http_helper(tmp_path: Path) -> None:
    """The shipped Rust HTTP helper (included from the glue file) GETs through an allowed endpoint,
    and reports EACCES (errno 2) without a policy."""
    main = tmp_path / "net_http.rs"
    main.write_text(RUST_MAIN.format(module=SHIPPED_GLUE / "wasm_sandbox_net.rs"))
    with http_server() as server:
        url = f"http://127.0.0.1:{server.port}/hello"
        sandbox = ws.WasmSandbox.builder().source(main).allow_network(f"127.0.0.1:{server.port}")
        assert sandbox.build().run(args=[url]).stdout == b"200 text/plain\nhello\n"
        denied = ws.WasmSandbox.builder().source(main).build()
        assert denied.run(args=[url]).stdout == b"error Some(2)\n"  # EACCES


C_SOURCE_WITH_GLUE = """
#include <stdio.h>
#include "wasm_sandbox_net.h"

int main(int argc, char **argv) {
    wsbx_http_response r;
    if (wsbx_http_request("GET", argv[1], NULL, NULL, 0, &r) != 0) {
        printf("errno %d\\n", errno);
        return 1;
    }
    printf("%d %s\\n", r.status, r.body);
    wsbx_http_response_free(&r);
    return 0;
}
"""

RUST_SOURCE_WITH_GLUE = """
include!("wasm_sandbox_net.rs");

fn main() {
    let url = std::env::args().nth(1).expect("usage: URL");
    match http_request("GET", &url, &[], b"") {
        Ok(r) => println!("{} {}", r.status, String::from_utf8_lossy(&r.body)),
        Err(e) => println!("error {:?}", e.raw_os_error()),
    }
}
"""

RUST_SOURCE_WITH_GLUE_MODULE = """
mod wasm_sandbox_net;

fn main() {
    let url = std::env::args().nth(1).expect("usage: URL");
    let r = wasm_sandbox_net::http_request("GET", &url, &[], b"").expect("request");
    println!("{} {}", r.status, String::from_utf8_lossy(&r.body));
}
"""


@pytest.mark.parametrize(
    ("language", "source"),
    [
        ("c", C_SOURCE_WITH_GLUE),
        ("rust", RUST_SOURCE_WITH_GLUE),
        ("rust", RUST_SOURCE_WITH_GLUE_MODULE),
    ],
    ids=["c-include", "rust-include!", "rust-mod"],
)
@pytest.mark.parametrize("given_as", ["path", "text"])
def test_shipped_net_glue_compiles_through_source(
    language: str, source: str, given_as: str, tmp_path: Path
) -> None:
    """A C or Rust source given to .source() (as a file outside the package, or as text) can
    include the shipped network glue by its bare name, as it can wasm_sandbox.h/.rs, and its
    request reaches a loopback server the policy allows."""
    builder = ws.WasmSandbox.builder()
    if given_as == "path":
        path = tmp_path / ("client.c" if language == "c" else "client.rs")
        path.write_text(source)
        builder.source(path)
    else:
        builder.source(source).language(language)
    with http_server() as server:
        sandbox = builder.allow_network(f"127.0.0.1:{server.port}").build()
        got = sandbox.run(args=[f"http://127.0.0.1:{server.port}/hello"])
        assert (got.exit_code, got.stdout) == (0, b"200 hello\n"), got.stderr
        assert got.resource_report.network_requests == 1
        assert server.paths == ["/hello"]
