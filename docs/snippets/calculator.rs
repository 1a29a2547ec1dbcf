// A Rust library guest: each `#[no_mangle] pub extern "C" fn` is callable with call().
#[no_mangle]
pub extern "C" fn add(a: i32, b: i32) -> i32 {
    a + b
}
