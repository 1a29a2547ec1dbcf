// wasm_sandbox.rs - the Rust guest side of wasm_sandbox's data ABI, in one file without
// dependencies (no serde): a JSON `Value`, a strict parser and a serializer, the `alloc` /
// `dealloc` exports, the `wasm_sandbox_export!` macro that turns
// `fn(Value) -> Result<Value, String>` into a data function the host can call, and
// `host_call` for the host's functions (`SandboxBuilder.host_function`).
//
// Builds with rustc >= 1.63 for wasm32-wasi, any edition (2015 is rustc's default), without
// warnings.
//
// USE IT in one of two ways (copy this file next to the guest's source):
//
//   include!("wasm_sandbox.rs");          // items land in the crate root: Value, ...
//
//   fn total(input: Value) -> Result<Value, String> {
//       let rows = input.get("rows").and_then(Value::as_array).ok_or("rows: expected a list")?;
//       let sum: f64 = rows.iter().filter_map(Value::as_f64).sum();
//       Ok(Value::object(vec![("sum", Value::from(sum)), ("n", Value::from(rows.len()))]))
//   }
//   wasm_sandbox_export!(process_data => total);
//
// or as a module (the macro is textual, hence #[macro_use]; `pub` keeps rustc from calling
// the helpers you do not use dead code; the glob import brings `Value` and the macro's
// hidden helper module `__wsbx` into scope):
//
//   #[macro_use] pub mod wasm_sandbox;
//   use wasm_sandbox::*;
//
// Invoke `wasm_sandbox_export!` where `__wsbx` is in scope: the crate root in both ways.
//
// THE ABI. A data function has the wasm signature (i32 ptr, i32 len) -> i64. The host calls
// `alloc(len)`, writes the UTF-8 JSON array of the call's positional arguments there and calls
// the function, which returns (out_ptr << 32) | out_len of an `alloc`ed UTF-8 JSON envelope:
// {"ok": <value>} or {"error": {"type": "<TypeName>", "message": "<text>"}}. The host then
// frees both with `dealloc(ptr, len)`. Bytes arguments arrive as {"$bytes": "<base64>"}
// (`Value::to_bytes` decodes them; `Value::bytes` makes such a value, which the host turns
// back into Python bytes).
//
// THE MACRO.
//   wasm_sandbox_export!(name => f);            // f gets the FIRST argument when exactly
//                                               // one was passed, else the whole args array
//                                               // (so f() with no arguments gets [], and
//                                               // f(a, b) gets [a, b])
//   wasm_sandbox_export!(name => f, all_args);  // f always gets the args array
// It defines `#[no_mangle] pub extern "C" fn name(ptr: i32, len: i32) -> i64` where it is
// invoked, so `name` must differ from `f`'s name (export `total` from `fn total_impl`).
// `f` is any function or closure taking a `Value` and returning anything `IntoResult`:
// a `Value`, a bool / number / string / Vec / Option (converted with `Value::from`), or a
// `Result<T, E>` with `T: Into<Value>` and `E` a `String`, `&str`, `ParseError` or
// `GuestError` (`GuestError::new("ValueError", "...")` picks the error's type name; the others
// report "GuestError", a `ParseError` "InvalidInput").
//   - Input that is not UTF-8, not JSON, not an array, nests deeper than
//     `Value::MAX_DEPTH` (256, counting the args array itself), holds a number beyond
//     f64's range or a lone surrogate (\ud800 without its pair) gives
//     {"error": {"type": "InvalidInput", ...}} without calling `f`.
//   - A panic in `f` aborts the instance: the message goes to stderr (WASI fd 2) and the
//     module traps with `unreachable`. So does running out of memory while working, except
//     in `alloc` itself, which returns 0 when it cannot allocate.
//
// NUMBERS are f64 (JSON has one number type). Output prints integral values below 2^53 in
// magnitude without a fraction ("3", not "3.0"), negative zero as "-0.0", other values in the
// shortest form that reads back exactly, NaN and infinities as null. `Value::from(i64)` of a
// value beyond 2^53 rounds.
//
// OBJECTS keep their members in order, duplicates included; `get` returns the LAST member of
// that name, as Python's and JavaScript's JSON parsers do.

/// A JSON value. Objects keep their members' order (duplicates included).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

impl Default for Value {
    fn default() -> Value {
        Value::Null
    }
}

impl Value {
    /// How deep arrays and objects may nest in parsed text (the outermost counts as 1).
    pub const MAX_DEPTH: usize = 256;

    /// Parses JSON text strictly (RFC 8259): one value, surrounded by whitespace only.
    pub fn parse(text: &str) -> Result<Value, ParseError> {
        __wsbx::parse(text)
    }

    /// The value as compact JSON text.
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        __wsbx::write_value(&mut out, self);
        out
    }

    /// An object from `(key, value)` pairs, e.g. `Value::object(vec![("n", Value::from(1))])`.
    pub fn object<I, K, V>(pairs: I) -> Value
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<Value>,
    {
        Value::Object(pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }

    /// An array from anything convertible, e.g. `Value::array(vec![1, 2, 3])`.
    pub fn array<I, V>(items: I) -> Value
    where
        I: IntoIterator<Item = V>,
        V: Into<Value>,
    {
        Value::Array(items.into_iter().map(Into::into).collect())
    }

    /// Bytes the way the host sends and receives them: `{"$bytes": "<base64>"}`.
    pub fn bytes(data: &[u8]) -> Value {
        Value::Object(vec![(
            "$bytes".to_string(),
            Value::String(__wsbx::base64_encode(data)),
        )])
    }

    /// The bytes of a `{"$bytes": "<base64>"}` value (see `Value::bytes`), else None.
    pub fn to_bytes(&self) -> Option<Vec<u8>> {
        match *self {
            Value::Object(ref members) if members.len() == 1 && members[0].0 == "$bytes" => {
                members[0].1.as_str().and_then(__wsbx::base64_decode)
            }
            _ => None,
        }
    }

    /// The member `key` of an object (the last one of that name); None for other values.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match *self {
            Value::Object(ref members) => members.iter().rev().find(|m| m.0 == key).map(|m| &m.1),
            _ => None,
        }
    }

    /// Like `get`, mutable.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        match *self {
            Value::Object(ref mut members) => {
                members.iter_mut().rev().find(|m| m.0 == key).map(|m| &mut m.1)
            }
            _ => None,
        }
    }

    /// Sets the member `key` of an object (replacing the last one of that name, else
    /// appending); turns any other value into an object first.
    pub fn set<K: Into<String>, V: Into<Value>>(&mut self, key: K, value: V) {
        let key = key.into();
        let value = value.into();
        if let Some(slot) = self.get_mut(&key) {
            *slot = value;
            return;
        }
        if let Value::Object(ref mut members) = *self {
            members.push((key, value));
            return;
        }
        *self = Value::Object(vec![(key, value)]);
    }

    /// Appends to an array; turns any other value into an array first.
    pub fn push<V: Into<Value>>(&mut self, value: V) {
        let value = value.into();
        if let Value::Array(ref mut items) = *self {
            items.push(value);
            return;
        }
        *self = Value::Array(vec![value]);
    }

    /// Item `i` of an array; None for other values or out of range.
    pub fn index(&self, i: usize) -> Option<&Value> {
        match *self {
            Value::Array(ref items) => items.get(i),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Number(x) => Some(x),
            _ => None,
        }
    }

    /// A number that is an integer within i64's range (so `1.0` is `Some(1)`, `1.5` None).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Number(x) if x.fract() == 0.0 && x >= -9.223_372_036_854_775_808e18
                && x < 9.223_372_036_854_775_808e18 => Some(x as i64),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match *self {
            Value::String(ref s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Vec<Value>> {
        match *self {
            Value::Array(ref items) => Some(items),
            _ => None,
        }
    }

    pub fn as_array_mut(&mut self) -> Option<&mut Vec<Value>> {
        match *self {
            Value::Array(ref mut items) => Some(items),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Vec<(String, Value)>> {
        match *self {
            Value::Object(ref members) => Some(members),
            _ => None,
        }
    }

    pub fn as_object_mut(&mut self) -> Option<&mut Vec<(String, Value)>> {
        match *self {
            Value::Object(ref mut members) => Some(members),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        match *self {
            Value::Null => true,
            _ => false,
        }
    }

    /// "null", "bool", "number", "string", "array" or "object" (handy in error messages).
    pub fn type_name(&self) -> &'static str {
        match *self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }
}

/// `value["key"]`: the member (see `get`), or `Value::Null` when absent.
impl<'a> ::std::ops::Index<&'a str> for Value {
    type Output = Value;
    fn index(&self, key: &'a str) -> &Value {
        self.get(key).unwrap_or(&__wsbx::NULL)
    }
}

/// `value[i]`: the item, or `Value::Null` when absent.
impl ::std::ops::Index<usize> for Value {
    type Output = Value;
    fn index(&self, i: usize) -> &Value {
        Value::index(self, i).unwrap_or(&__wsbx::NULL)
    }
}

/// Formats as compact JSON (`to_json`).
impl ::std::fmt::Display for Value {
    fn fmt(&self, f: &mut ::std::fmt::Formatter) -> ::std::fmt::Result {
        f.write_str(&self.to_json())
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}

impl<'a> From<&'a str> for Value {
    fn from(s: &'a str) -> Value {
        Value::String(s.to_string())
    }
}

impl<'a> From<&'a String> for Value {
    fn from(s: &'a String) -> Value {
        Value::String(s.clone())
    }
}

impl From<char> for Value {
    fn from(c: char) -> Value {
        Value::String(c.to_string())
    }
}

impl From<()> for Value {
    fn from(_: ()) -> Value {
        Value::Null
    }
}

impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(items: Vec<T>) -> Value {
        Value::Array(items.into_iter().map(Into::into).collect())
    }
}

/// `None` is null.
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(item: Option<T>) -> Value {
        match item {
            Some(v) => v.into(),
            None => Value::Null,
        }
    }
}

/// `iter.collect::<Value>()` makes an array.
impl ::std::iter::FromIterator<Value> for Value {
    fn from_iter<I: IntoIterator<Item = Value>>(iter: I) -> Value {
        Value::Array(iter.into_iter().collect())
    }
}

/// `pairs.collect::<Value>()` makes an object.
impl<K: Into<String>, V: Into<Value>> ::std::iter::FromIterator<(K, V)> for Value {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Value {
        Value::object(iter)
    }
}

macro_rules! __wsbx_number_impls {
    ($($t:ty)*) => {$(
        impl From<$t> for Value {
            fn from(x: $t) -> Value {
                Value::Number(x as f64)
            }
        }
        impl IntoResult for $t {
            fn into_result(self) -> Result<Value, GuestError> {
                Ok(Value::from(self))
            }
        }
    )*};
}

__wsbx_number_impls!(f64 f32 i8 i16 i32 i64 isize u8 u16 u32 u64 usize);

/// Why text is not JSON: what was wrong, and at which byte offset.
#[derive(Clone, Debug, PartialEq)]
pub struct ParseError {
    pub message: String,
    pub offset: usize,
}

impl ::std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut ::std::fmt::Formatter) -> ::std::fmt::Result {
        write!(f, "{} at byte {}", self.message, self.offset)
    }
}

impl ::std::error::Error for ParseError {}

/// An error a data function reports: {"error": {"type": kind, "message": message}}.
#[derive(Clone, Debug, PartialEq)]
pub struct GuestError {
    pub kind: String,
    pub message: String,
}

impl GuestError {
    /// An error of the type name `kind`, e.g. `GuestError::new("ValueError", "n < 0")`.
    pub fn new<K: Into<String>, M: Into<String>>(kind: K, message: M) -> GuestError {
        GuestError {
            kind: kind.into(),
            message: message.into(),
        }
    }
}

impl ::std::fmt::Display for GuestError {
    fn fmt(&self, f: &mut ::std::fmt::Formatter) -> ::std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl ::std::error::Error for GuestError {}

/// A message alone is a "GuestError".
impl From<String> for GuestError {
    fn from(message: String) -> GuestError {
        GuestError::new("GuestError", message)
    }
}

impl<'a> From<&'a str> for GuestError {
    fn from(message: &'a str) -> GuestError {
        GuestError::new("GuestError", message)
    }
}

impl From<ParseError> for GuestError {
    fn from(e: ParseError) -> GuestError {
        GuestError::new("InvalidInput", e.to_string())
    }
}

/// What a function exported with `wasm_sandbox_export!` may return.
pub trait IntoResult {
    fn into_result(self) -> Result<Value, GuestError>;
}

impl IntoResult for Value {
    fn into_result(self) -> Result<Value, GuestError> {
        Ok(self)
    }
}

impl<T: Into<Value>, E: Into<GuestError>> IntoResult for Result<T, E> {
    fn into_result(self) -> Result<Value, GuestError> {
        match self {
            Ok(v) => Ok(v.into()),
            Err(e) => Err(e.into()),
        }
    }
}

impl IntoResult for bool {
    fn into_result(self) -> Result<Value, GuestError> {
        Ok(Value::Bool(self))
    }
}

impl IntoResult for String {
    fn into_result(self) -> Result<Value, GuestError> {
        Ok(Value::String(self))
    }
}

impl<'a> IntoResult for &'a str {
    fn into_result(self) -> Result<Value, GuestError> {
        Ok(Value::from(self))
    }
}

impl<T: Into<Value>> IntoResult for Vec<T> {
    fn into_result(self) -> Result<Value, GuestError> {
        Ok(Value::from(self))
    }
}

impl<T: Into<Value>> IntoResult for Option<T> {
    fn into_result(self) -> Result<Value, GuestError> {
        Ok(Value::from(self))
    }
}

/// The data ABI's allocator export: `size` fresh bytes (a non-zero dummy pointer for 0),
/// or 0 when memory is exhausted.
#[no_mangle]
pub extern "C" fn alloc(size: i32) -> i32 {
    let size = size as u32 as usize;
    if size == 0 {
        return &__wsbx::EMPTY as *const u8 as usize as i32;
    }
    match ::std::alloc::Layout::from_size_align(size, 1) {
        // SAFETY: the layout's size is not zero.
        Ok(layout) => unsafe { ::std::alloc::alloc(layout) as usize as i32 },
        Err(_) => 0,
    }
}

/// The data ABI's deallocator export: frees what `alloc(size)` returned.
///
/// # Safety
/// `ptr` must come from `alloc(size)` with the same `size`, and not be freed yet.
#[no_mangle]
pub unsafe extern "C" fn dealloc(ptr: i32, size: i32) {
    let size = size as u32 as usize;
    if ptr == 0 || size == 0 {
        return;
    }
    ::std::alloc::dealloc(
        ptr as u32 as usize as *mut u8,
        ::std::alloc::Layout::from_size_align_unchecked(size, 1),
    );
}

/// Calls the host function `name` (registered with `SandboxBuilder.host_function`) with
/// `args`, its positional arguments: its value, or a `GuestError` whose `kind` and `message`
/// are the host exception's type and message ("TimeoutError" past `host_call_timeout`,
/// "NameError" for a name the host does not have). Arguments and the value cross as JSON
/// (`Value::bytes` for bytes). Through the host's import `wasm_sandbox_host.call`, which
/// places the answer with this module's `alloc` (see wasm_sandbox.h for the ABI).
pub fn host_call(name: &str, args: Vec<Value>) -> Result<Value, GuestError> {
    let request = Value::object(vec![("host", Value::from(name)), ("args", Value::Array(args))]);
    let text = request.to_json();
    // SAFETY: the host reads `text` during the call; the answer is ours to free (below).
    let packed = unsafe { __wsbx::host_import(text.as_ptr() as usize as i32, text.len() as i32) };
    let (ptr, len) = ((packed as u64 >> 32) as u32 as usize, packed as u32 as usize);
    if ptr == 0 {
        return Err(GuestError::new("MemoryError", "no memory for the host function's answer"));
    }
    // SAFETY: the host wrote `len` bytes at `ptr`, which it got from `alloc(len)`.
    let answer = unsafe {
        let bytes = ::std::slice::from_raw_parts(ptr as *const u8, len);
        let answer = String::from_utf8_lossy(bytes).into_owned();
        dealloc(ptr as i32, len as i32);
        answer
    };
    let envelope = Value::parse(&answer).map_err(GuestError::from)?;
    if let Some(value) = envelope.get("ok") {
        return Ok(value.clone());
    }
    let error = envelope.get("error");
    let field = |key: &str| error.and_then(|e| e.get(key)).and_then(Value::as_str).unwrap_or("");
    Err(GuestError::new(field("type"), field("message")))
}

/// Exports `f: fn(Value) -> impl IntoResult` as the data function `name`; see the top of
/// wasm_sandbox.rs. `, all_args` passes the arguments array even for one argument.
macro_rules! wasm_sandbox_export {
    ($name:ident => $func:expr, all_args) => {
        #[no_mangle]
        pub extern "C" fn $name(ptr: i32, len: i32) -> i64 {
            // SAFETY: the host passes the (ptr, len) it got from `alloc(len)` and filled.
            unsafe {
                __wsbx::dispatch(ptr, len, true, |input| __wsbx::into_result(($func)(input)))
            }
        }
    };
    ($name:ident => $func:expr) => {
        #[no_mangle]
        pub extern "C" fn $name(ptr: i32, len: i32) -> i64 {
            // SAFETY: the host passes the (ptr, len) it got from `alloc(len)` and filled.
            unsafe {
                __wsbx::dispatch(ptr, len, false, |input| __wsbx::into_result(($func)(input)))
            }
        }
    };
}

/// The machinery behind `Value` and `wasm_sandbox_export!` (not part of the API).
#[doc(hidden)]
pub mod __wsbx {
    use super::{GuestError, IntoResult, ParseError, Value};
    use std::fmt::Write;

    #[link(wasm_import_module = "wasm_sandbox_host")]
    extern "C" {
        /// The host-function import (see `host_call`).
        #[link_name = "call"]
        pub fn host_import(ptr: i32, len: i32) -> i64;
    }

    pub static NULL: Value = Value::Null;
    pub static EMPTY: u8 = 0;

    pub fn into_result<R: IntoResult>(r: R) -> Result<Value, GuestError> {
        r.into_result()
    }

    /// Runs one data call: decodes the input, calls `f`, returns the packed envelope.
    ///
    /// # Safety
    /// `(ptr, len)` must be readable memory holding the input (the host's `alloc` result).
    pub unsafe fn dispatch<F>(ptr: i32, len: i32, all_args: bool, f: F) -> i64
    where
        F: FnOnce(Value) -> Result<Value, GuestError>,
    {
        let len = len as u32 as usize;
        let input: &[u8] = if len == 0 {
            &[]
        } else {
            ::std::slice::from_raw_parts(ptr as u32 as usize as *const u8, len)
        };
        let envelope = match decode_args(input) {
            Ok(args) => {
                let arg = if all_args { args } else { single(args) };
                match f(arg) {
                    Ok(value) => {
                        let mut out = String::with_capacity(64);
                        out.push_str("{\"ok\":");
                        write_value(&mut out, &value);
                        out.push('}');
                        out
                    }
                    Err(e) => error_envelope(&e.kind, &e.message),
                }
            }
            Err(message) => error_envelope("InvalidInput", &message),
        };
        let out_len = envelope.len();
        let out_ptr = super::alloc(out_len as i32);
        if out_ptr == 0 {
            ::std::process::abort();
        }
        ::std::ptr::copy_nonoverlapping(
            envelope.as_ptr(),
            out_ptr as u32 as usize as *mut u8,
            out_len,
        );
        (((out_ptr as u32 as u64) << 32) | out_len as u64) as i64
    }

    fn decode_args(input: &[u8]) -> Result<Value, String> {
        let text = match ::std::str::from_utf8(input) {
            Ok(text) => text,
            Err(e) => {
                return Err(format!("the input is not UTF-8 (at byte {})", e.valid_up_to()))
            }
        };
        match parse(text) {
            Ok(args @ Value::Array(_)) => Ok(args),
            Ok(other) => Err(format!(
                "the input must be a JSON array of arguments, not {}",
                other.type_name()
            )),
            Err(e) => Err(format!("the input is not valid JSON: {}", e)),
        }
    }

    fn single(args: Value) -> Value {
        match args {
            Value::Array(mut items) => {
                if items.len() == 1 {
                    items.pop().unwrap_or(Value::Null)
                } else {
                    Value::Array(items)
                }
            }
            other => other,
        }
    }

    pub fn error_envelope(kind: &str, message: &str) -> String {
        let mut out = String::with_capacity(48 + kind.len() + message.len());
        out.push_str("{\"error\":{\"type\":");
        write_string(&mut out, kind);
        out.push_str(",\"message\":");
        write_string(&mut out, message);
        out.push_str("}}");
        out
    }

    // ---- serializer ----

    pub fn write_value(out: &mut String, value: &Value) {
        match *value {
            Value::Null => out.push_str("null"),
            Value::Bool(true) => out.push_str("true"),
            Value::Bool(false) => out.push_str("false"),
            Value::Number(x) => write_number(out, x),
            Value::String(ref s) => write_string(out, s),
            Value::Array(ref items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_value(out, item);
                }
                out.push(']');
            }
            Value::Object(ref members) => {
                out.push('{');
                for (i, member) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(out, &member.0);
                    out.push(':');
                    write_value(out, &member.1);
                }
                out.push('}');
            }
        }
    }

    pub fn write_number(out: &mut String, x: f64) {
        const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
        let magnitude = x.abs();
        let _ = if !x.is_finite() {
            out.write_str("null")
        } else if x == 0.0 && x.is_sign_negative() {
            out.write_str("-0.0")
        } else if x.fract() == 0.0 && magnitude < EXACT {
            write!(out, "{}", x as i64)
        } else if magnitude >= 1e-6 && magnitude < EXACT {
            write!(out, "{}", x) // shortest round-trip digits, never an exponent
        } else {
            write!(out, "{:e}", x) // shortest round-trip digits, e.g. 1e-7, 1.5e300
        };
    }

    pub fn write_string(out: &mut String, s: &str) {
        out.reserve(s.len() + 2);
        out.push('"');
        let bytes = s.as_bytes();
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let escape = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0x00..=0x1f => "",
                _ => continue,
            };
            out.push_str(&s[start..i]); // i is an ASCII byte: a char boundary
            if escape.is_empty() {
                let _ = write!(out, "\\u{:04x}", b);
            } else {
                out.push_str(escape);
            }
            start = i + 1;
        }
        out.push_str(&s[start..]);
        out.push('"');
    }

    // ---- parser ----

    pub fn parse(text: &str) -> Result<Value, ParseError> {
        let mut p = Parser {
            text: text,
            bytes: text.as_bytes(),
            pos: 0,
            depth: 0,
        };
        p.skip_ws();
        let value = p.value()?;
        p.skip_ws();
        if p.pos < p.bytes.len() {
            return Err(p.error("unexpected text after the JSON value"));
        }
        Ok(value)
    }

    struct Parser<'a> {
        text: &'a str,
        bytes: &'a [u8],
        pos: usize,
        depth: usize,
    }

    impl<'a> Parser<'a> {
        fn error(&self, message: &str) -> ParseError {
            ParseError {
                message: message.to_string(),
                offset: self.pos,
            }
        }

        fn peek(&self) -> Option<u8> {
            self.bytes.get(self.pos).cloned()
        }

        fn skip_ws(&mut self) {
            while let Some(b' ') | Some(b'\t') | Some(b'\n') | Some(b'\r') = self.peek() {
                self.pos += 1;
            }
        }

        fn literal(&mut self, word: &str, value: Value) -> Result<Value, ParseError> {
            if self.bytes[self.pos..].starts_with(word.as_bytes()) {
                self.pos += word.len();
                Ok(value)
            } else {
                Err(self.error("invalid literal"))
            }
        }

        fn value(&mut self) -> Result<Value, ParseError> {
            match self.peek() {
                None => Err(self.error("unexpected end of input, expected a value")),
                Some(b'n') => self.literal("null", Value::Null),
                Some(b't') => self.literal("true", Value::Bool(true)),
                Some(b'f') => self.literal("false", Value::Bool(false)),
                Some(b'"') => self.string().map(Value::String),
                Some(b'[') => self.array(),
                Some(b'{') => self.object(),
                Some(b'-') | Some(b'0'..=b'9') => self.number(),
                Some(_) => Err(self.error("unexpected character, expected a value")),
            }
        }

        fn enter(&mut self) -> Result<(), ParseError> {
            if self.depth >= Value::MAX_DEPTH {
                return Err(self.error("arrays and objects nest deeper than 256 levels"));
            }
            self.depth += 1;
            self.pos += 1;
            Ok(())
        }

        fn array(&mut self) -> Result<Value, ParseError> {
            self.enter()?;
            let mut items = Vec::new();
            self.skip_ws();
            if self.peek() == Some(b']') {
                self.pos += 1;
                self.depth -= 1;
                return Ok(Value::Array(items));
            }
            loop {
                self.skip_ws();
                items.push(self.value()?);
                self.skip_ws();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b']') => break,
                    None => return Err(self.error("unexpected end of input in an array")),
                    Some(_) => return Err(self.error("expected ',' or ']' in an array")),
                }
            }
            self.pos += 1;
            self.depth -= 1;
            Ok(Value::Array(items))
        }

        fn object(&mut self) -> Result<Value, ParseError> {
            self.enter()?;
            let mut members = Vec::new();
            self.skip_ws();
            if self.peek() == Some(b'}') {
                self.pos += 1;
                self.depth -= 1;
                return Ok(Value::Object(members));
            }
            loop {
                self.skip_ws();
                if self.peek() != Some(b'"') {
                    return Err(self.error("expected a string key in an object"));
                }
                let key = self.string()?;
                self.skip_ws();
                if self.peek() != Some(b':') {
                    return Err(self.error("expected ':' after an object key"));
                }
                self.pos += 1;
                self.skip_ws();
                let value = self.value()?;
                members.push((key, value));
                self.skip_ws();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b'}') => break,
                    None => return Err(self.error("unexpected end of input in an object")),
                    Some(_) => return Err(self.error("expected ',' or '}' in an object")),
                }
            }
            self.pos += 1;
            self.depth -= 1;
            Ok(Value::Object(members))
        }

        fn digits(&mut self) -> usize {
            let start = self.pos;
            while let Some(b'0'..=b'9') = self.peek() {
                self.pos += 1;
            }
            self.pos - start
        }

        fn number(&mut self) -> Result<Value, ParseError> {
            let start = self.pos;
            if self.peek() == Some(b'-') {
                self.pos += 1;
            }
            match self.peek() {
                Some(b'0') => {
                    self.pos += 1;
                    if let Some(b'0'..=b'9') = self.peek() {
                        return Err(self.error("leading zeros are not allowed in numbers"));
                    }
                }
                Some(b'1'..=b'9') => {
                    self.digits();
                }
                _ => return Err(self.error("expected a digit")),
            }
            if self.peek() == Some(b'.') {
                self.pos += 1;
                if self.digits() == 0 {
                    return Err(self.error("expected a digit after the decimal point"));
                }
            }
            if let Some(b'e') | Some(b'E') = self.peek() {
                self.pos += 1;
                if let Some(b'+') | Some(b'-') = self.peek() {
                    self.pos += 1;
                }
                if self.digits() == 0 {
                    return Err(self.error("expected a digit in the exponent"));
                }
            }
            let parsed = self.text.get(start..self.pos).and_then(|s| s.parse::<f64>().ok());
            match parsed {
                Some(x) if x.is_finite() => Ok(Value::Number(x)),
                _ => Err(ParseError {
                    message: "number out of range".to_string(),
                    offset: start,
                }),
            }
        }

        fn hex4(&mut self) -> Result<u32, ParseError> {
            let mut code = 0;
            for _ in 0..4 {
                let digit = match self.peek() {
                    Some(b) => (b as char).to_digit(16),
                    None => None,
                };
                match digit {
                    Some(d) => code = code * 16 + d,
                    None => return Err(self.error("expected 4 hex digits after \\u")),
                }
                self.pos += 1;
            }
            Ok(code)
        }

        fn string(&mut self) -> Result<String, ParseError> {
            self.pos += 1; // the opening quote
            let mut out = String::new();
            let mut start = self.pos;
            loop {
                let b = match self.peek() {
                    Some(b) => b,
                    None => return Err(self.error("unterminated string")),
                };
                if b != b'"' && b != b'\\' && b >= 0x20 {
                    self.pos += 1;
                    continue;
                }
                // start..pos ends before an ASCII byte: a char boundary
                match self.text.get(start..self.pos) {
                    Some(run) => out.push_str(run),
                    None => return Err(self.error("invalid string")),
                }
                if b == b'"' {
                    self.pos += 1;
                    return Ok(out);
                }
                if b < 0x20 {
                    return Err(self.error("control characters must be escaped in strings"));
                }
                self.pos += 1; // the backslash
                let simple = match self.peek() {
                    Some(b'"') => Some('"'),
                    Some(b'\\') => Some('\\'),
                    Some(b'/') => Some('/'),
                    Some(b'b') => Some('\u{8}'),
                    Some(b'f') => Some('\u{c}'),
                    Some(b'n') => Some('\n'),
                    Some(b'r') => Some('\r'),
                    Some(b't') => Some('\t'),
                    Some(b'u') => None,
                    _ => return Err(self.error("invalid escape in a string")),
                };
                self.pos += 1; // the escape's letter
                let c = match simple {
                    Some(c) => c,
                    None => self.unicode_escape()?,
                };
                out.push(c);
                start = self.pos;
            }
        }

        /// The character of `\uXXXX` (after the `u`), or of a surrogate pair `\uD83D\uDE00`.
        fn unicode_escape(&mut self) -> Result<char, ParseError> {
            let at = self.pos - 2;
            let high = self.hex4()?;
            let code = match high {
                0xD800..=0xDBFF => {
                    if !self.bytes[self.pos..].starts_with(b"\\u") {
                        return Err(ParseError {
                            message: "lone surrogate in a \\u escape".to_string(),
                            offset: at,
                        });
                    }
                    self.pos += 2;
                    let low = self.hex4()?;
                    if low < 0xDC00 || low > 0xDFFF {
                        return Err(ParseError {
                            message: "lone surrogate in a \\u escape".to_string(),
                            offset: at,
                        });
                    }
                    0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                }
                0xDC00..=0xDFFF => {
                    return Err(ParseError {
                        message: "lone surrogate in a \\u escape".to_string(),
                        offset: at,
                    })
                }
                _ => high,
            };
            match ::std::char::from_u32(code) {
                Some(c) => Ok(c),
                None => Err(self.error("invalid \\u escape")),
            }
        }
    }

    // ---- base64 (standard alphabet, padded: what Python's base64 module reads and writes) ----

    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn base64_encode(data: &[u8]) -> String {
        let mut out = String::with_capacity((data.len() + 2) / 3 * 4);
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    fn sextet(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }

    pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
        let bytes = text.as_bytes();
        if bytes.len() % 4 != 0 {
            return None;
        }
        let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
        let quads = bytes.len() / 4;
        for (q, quad) in bytes.chunks(4).enumerate() {
            let pad = if q + 1 == quads {
                quad.iter().rev().take_while(|&&c| c == b'=').count()
            } else {
                0
            };
            if pad > 2 {
                return None;
            }
            let mut n = 0u32;
            for &c in &quad[..4 - pad] {
                n = (n << 6) | sextet(c)?;
            }
            n <<= 6 * pad as u32;
            out.push((n >> 16) as u8);
            if pad < 2 {
                out.push((n >> 8) as u8);
            }
            if pad < 1 {
                out.push(n as u8);
            }
        }
        Some(out)
    }
}
