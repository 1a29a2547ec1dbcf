"""The asyncio twin under load: a call's time limit counts from when its guest starts, not
while it waits for a worker thread; ``max_concurrency`` sets how many run at once."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import wasm_sandbox as ws

SLEEPER = "import time\ndef nap(seconds):\n    time.sleep(seconds)\n    return seconds\n"


def _sleeper(max_concurrency: int | None) -> ws.AsyncWasmSandbox:
    sandbox = (
        ws.WasmSandbox.builder().source(SLEEPER).language("python").timeout_duration(1)
        .max_fuel(None).build()
    )  # fmt: skip
    return ws.AsyncWasmSandbox(sandbox, max_concurrency=max_concurrency)


@pytest.mark.parametrize("max_concurrency", [None, 3])
def test_queued_calls_do_not_spend_their_time_limit_waiting(max_concurrency: int | None) -> None:
    """20 calls of 0.4 s under a 1 s timeout, more than there are threads: every one
    finishes, though the last ones wait well past 1 s for a thread."""

    async def main() -> tuple[list[object], float]:
        async with _sleeper(max_concurrency) as sandbox:
            started = time.monotonic()
            answers = await asyncio.gather(
                *(sandbox.call("nap", 0.4) for _ in range(20)), return_exceptions=True
            )
            return answers, time.monotonic() - started

    answers, elapsed = asyncio.run(main())
    assert answers == [0.4] * 20
    if max_concurrency is not None:  # 20 naps, 3 at a time: at least 7 rounds of 0.4 s
        assert elapsed >= 2.5


def test_max_concurrency_bounds_the_calls_running_at_once() -> None:
    """Six naps of 0.3 s, two at a time: three rounds, on the sandbox's own two threads."""

    async def main() -> tuple[float, set[str]]:
        sandbox = _sleeper(2)
        seen: set[str] = set()

        async def one() -> None:
            await sandbox.call("nap", 0.3)
            seen.update(t.name for t in threading.enumerate() if "wasm-sandbox-async" in t.name)

        started = time.monotonic()
        await asyncio.gather(*(one() for _ in range(6)))
        elapsed = time.monotonic() - started
        await sandbox.close()
        return elapsed, seen

    elapsed, threads = asyncio.run(main())
    assert elapsed >= 0.85
    assert 1 <= len(threads) <= 2


def test_a_call_still_times_out_on_its_own_time() -> None:
    async def main() -> None:
        async with _sleeper(None) as sandbox:
            with pytest.raises(ws.ExecutionTimeout):
                await sandbox.call("nap", 3)

    asyncio.run(main())


@pytest.mark.parametrize("value", [0, -1, 5000])
def test_max_concurrency_is_checked(value: int) -> None:
    sandbox = ws.WasmSandbox.builder().source(SLEEPER).language("python").build()
    with pytest.raises(ws.ConfigurationError, match="max_concurrency"):
        ws.AsyncWasmSandbox(sandbox, max_concurrency=value)
