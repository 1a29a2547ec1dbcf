// A Rust library guest: no `main`, so it compiles to a module whose exported functions
// `call()` (or `wasm-sandbox run --invoke`) reaches. See docs/c-rust.md.

#[no_mangle]
pub extern "C" fn add(a: i32, b: i32) -> i32 {
    a.wrapping_add(b)
}

#[no_mangle]
pub extern "C" fn fib(n: i32) -> i64 {
    let (mut a, mut b) = (0i64, 1i64);
    for _ in 0..n {
        (a, b) = (b, a.wrapping_add(b));
    }
    a
}
