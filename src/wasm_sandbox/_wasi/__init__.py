"""WASI preview1, served by the host: the syscalls (``_preview1``, ``_files``, ``_paths``,
``_net``, ``_http``, ``_door``), the descriptor table and confined path resolution (``_fs``),
and one execution's state (``_context``, ``_state``) with its network guard (``_guard``).
No wasmtime here: ``_runtime._bind`` binds these functions to an engine.
"""
