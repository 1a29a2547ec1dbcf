"""The same "python" tool on pyeryx 0.11 (its documented API: Sandbox, ResourceLimits,
volumes, ExecuteResult), with the same answer. Its Sandbox holds the standard library only:
numpy and pandas need a SandboxFactory built from wheels the user supplies (not counted)."""

import eryx


def python_tool(code: str) -> dict:
    limits = eryx.ResourceLimits(execution_timeout_ms=10_000, max_memory_bytes=256 * 1024 * 1024)
    sandbox = eryx.Sandbox(
        resource_limits=limits, volumes=[("data", "/data", True), ("out", "/out", False)]
    )
    answer = {"ok": False, "stdout": "", "stderr": "", "result": None, "error": None}
    try:
        executed = sandbox.execute(code)
    except eryx.TimeoutError as error:
        answer["error"] = {"type": "Timeout", "message": str(error), "limit": "timeout"}
    except eryx.ResourceLimitError as error:
        answer["error"] = {"type": "ResourceLimit", "message": str(error), "limit": "memory"}
    except eryx.ExecutionError as error:
        answer["error"] = {"type": "ExecutionError", "message": str(error), "limit": None}
    else:
        answer.update(
            ok=True,
            stdout=executed.stdout_text,
            stderr=executed.stderr_text,
            result=executed.result,
        )
    return answer
