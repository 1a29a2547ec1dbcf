"""The official WASI preview1 conformance suite, every program run through wasm-sandbox and,
side by side, through wasmtime-py's own WASI (which checks the harness itself): both must
pass each test. Skipped with a reason where ``../shared/wasi-testsuite`` is absent."""

from __future__ import annotations

import pytest

from .wasi_testsuite import Case, cases, run_ours, run_reference, suite_dir

SUITE = suite_dir()
CASES = list(cases(SUITE)) if SUITE is not None else []
EXPECTED_COUNT = 72
"""Programs in the suite's preview1 part (14 C, 46 Rust, 12 AssemblyScript)."""

pytestmark = pytest.mark.skipif(
    SUITE is None,
    reason="the WASI testsuite is not here: set WASI_TESTSUITE or put it at "
    "../shared/wasi-testsuite next to the project",
)


def test_the_whole_suite_is_found() -> None:
    """All 72 preview1 programs are collected (a moved or emptied suite cannot pass quietly)."""
    assert len(CASES) == EXPECTED_COUNT, [c.name for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_conformance(case: Case) -> None:
    """The program passes under wasmtime's WASI (the reference) and under ours."""
    reference = run_reference(case).failure(case)
    assert reference is None, f"the reference fails: {reference}"
    ours = run_ours(case).failure(case)
    assert ours is None, f"{case.name} fails under wasm-sandbox: {ours}"
