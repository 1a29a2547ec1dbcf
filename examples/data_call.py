"""Call a Rust guest with structured data, then make it fail: values in, values out."""

from pathlib import Path

import wasm_sandbox
from wasm_sandbox import GuestError, WasmSandbox

HERE = Path(__file__).parent

sandbox = WasmSandbox.builder().source(HERE / "processor.rs").max_fuel(50_000_000).build()
print(sandbox.call("process_data", {"rows": [3, 4, 5.5]}))
# {'count': 3, 'total': 12.5, 'mean': 4.166666666666667}

try:
    sandbox.call("process_data", {"rows": "not a list"})
except GuestError as error:
    print("guest said:", error)

print(wasm_sandbox.run(HERE / "processor.rs", "process_data", {"rows": [1, 2]}))
