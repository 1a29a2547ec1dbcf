include!("wasm_sandbox.rs");                 // Value, a JSON parser/serializer, alloc/dealloc
fn total(input: Value) -> Result<Value, String> {   // input: the argument (or the array of them)
    let rows = input.get("rows").and_then(Value::as_array).ok_or("rows: expected a list")?;
    Ok(Value::from(rows.iter().filter_map(Value::as_f64).sum::<f64>()))
}
wasm_sandbox_export!(process_data => total);
