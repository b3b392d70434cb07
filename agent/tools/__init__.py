"""Tools the model can call: a registry of plain async functions plus the built-ins.

Others may import: ``ToolRegistry``, ``ToolContext`` and ``builtin_registry`` from here, and
``resolve_path`` / ``is_private`` from ``agent.tools.files`` (for anything else that opens files on
the model's behalf). The modules: ``registry`` (specs, validation, run), ``files`` (read_file,
write_file, edit_file, list_dir, search_files), ``shell`` (exec, off by default) and ``web``
(web_fetch). A tool signals a failure the model can act on by raising ``agent.errors.ToolError``.
"""

from agent.tools.registry import ToolContext, ToolRegistry, builtin_registry

__all__ = ["ToolContext", "ToolRegistry", "builtin_registry"]
