"""``python -m wasm_sandbox``: the same as the ``wasm-sandbox`` command."""

from ._cli import main

raise SystemExit(main())
