// A Rust guest called with Python data (see examples/data_call.py). The helper module ships
// with wasm-sandbox and is found automatically when the sandbox compiles this file.
include!("wasm_sandbox.rs");

fn summarise(input: Value) -> Result<Value, String> {
    let rows = input.get("rows").and_then(Value::as_array).ok_or("rows: expected a list")?;
    let values: Vec<f64> = rows.iter().filter_map(Value::as_f64).collect();
    if values.is_empty() {
        return Err("rows: no numbers".to_string());
    }
    let total: f64 = values.iter().sum();
    Ok(Value::object(vec![
        ("count", Value::from(values.len() as i64)),
        ("total", Value::from(total)),
        ("mean", Value::from(total / values.len() as f64)),
    ]))
}

wasm_sandbox_export!(process_data => summarise);
