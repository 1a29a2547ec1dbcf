"""The 30-second example (docs/getting-started.md): build a sandbox, call it, read the report."""

from datetime import timedelta
from pathlib import Path

from wasm_sandbox import FuelExhausted, WasmSandbox

HERE = Path(__file__).parent

sandbox = (
    WasmSandbox.builder()
    .source(HERE / "calculator.wat")
    .memory_limit(16 * 1024 * 1024)
    .timeout_duration(timedelta(seconds=5))
    .max_fuel(10_000_000)
    .build()
)
print("add(5, 3) =", sandbox.call("add", 5, 3))

result = sandbox.call_with_detailed_monitoring("fib", 20)
print("fib(20) =", result.value)
print(result.resource_report.format_table())

try:
    sandbox.call("fib", 40)  # far more than 10 million units of fuel
except FuelExhausted as error:
    print("stopped:", error)
