"""A user's own task for the ``jaxlr`` command: ``--task path/to/file.py:make_task`` (or
``package.module:make_task``) and ``--task-option KEY=VALUE``.

``make_task(**options)`` returns a :class:`jaxlr.Task` (init, loss_fn, data, eval_data). The
run's ``config.json`` records the reference (a file path made absolute), the options and the
SHA-256 of the source file, so ``jaxlr resume DIR`` and ``jaxlr.load(DIR)`` rebuild the same
task, and refuse one whose file changed since the run started (its program, hence its
results, could differ). A task is loaded once per process and reference.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import sys
from pathlib import Path
from typing import Any

from jaxlr._sweep import Task

_LOADED: dict[str, Task] = {}


class TaskError(ValueError):
    """A task reference that cannot be used (printed as one line by the command)."""


def parse_options(items: list[str] | None) -> dict[str, Any]:
    """``["width=256", "name=cnn"]`` -> ``{"width": 256, "name": "cnn"}`` (a value is read as
    JSON when it parses: numbers, true/false, lists; else it is a string)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise TaskError(f"--task-option must be KEY=VALUE with KEY a Python name, got "
                            f"{item!r}; e.g. --task-option width=256")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def resolve_ref(ref: str) -> tuple[str, Path]:
    """The reference with a file made absolute, and the source file it names."""
    target, sep, func = ref.rpartition(":")
    if not sep or not target or not func.isidentifier():
        raise TaskError(f"--task must be FILE.py:FUNCTION or package.module:FUNCTION, got "
                        f"--task {ref}; e.g. --task my_task.py:make_task")
    if target.endswith(".py"):
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise TaskError(f"--task {ref}: no file {path}")
        return f"{path}:{func}", path
    try:
        spec = importlib.util.find_spec(target)
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        raise TaskError(f"--task {ref}: no module {target!r} can be imported (a file path must "
                        "end in .py)")
    return ref, Path(spec.origin)


def digest(path: Path) -> str:
    """The SHA-256 of a task's source file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def describe(ref: str, options: dict[str, Any]) -> str:
    shown = ", ".join(f"{k}={v!r}" for k, v in options.items())
    return f"{ref.rpartition(':')[2]}({shown}) from {ref.rpartition(':')[0]}"


def load_task(ref: str, options: dict[str, Any], sha256: str | None = None) -> Task:
    """``FUNCTION(**options)`` of the reference, checked to be a :class:`jaxlr.Task` (and, with
    ``sha256``, the source file to be the one the run recorded)."""
    ref, path = resolve_ref(ref)
    now = digest(path)
    if sha256 is not None and now != sha256:
        raise TaskError(f"the task file {path} changed since the run started (SHA-256 "
                        f"{now[:12]}... vs {sha256[:12]}... recorded in config.json): its "
                        "results would not be this run's; restore the file, or start a new run")
    key = json.dumps([ref, now, options], sort_keys=True, default=str)
    if key in _LOADED:
        return _LOADED[key]
    target, _, func = ref.rpartition(":")
    if target.endswith(".py"):
        name = f"jaxlr_task_{now[:16]}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look their module up by name
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    make = getattr(module, func, None)
    if not callable(make):
        found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith(
            "_") and getattr(v, "__module__", None) == module.__name__)
        raise TaskError(f"--task {ref}: {target} has no function {func!r}; it defines {found}")
    try:
        inspect.signature(make).bind(**options)
    except TypeError as e:
        raise TaskError(f"--task {ref}: {func}{inspect.signature(make)} cannot take the "
                        f"options {options} ({e}); give --task-option KEY=VALUE for its "
                        "parameters") from None
    task = make(**options)
    if not isinstance(task, Task):
        raise TaskError(f"--task {ref}: {func}(...) returned {type(task).__name__}, not a "
                        "jaxlr.Task; return jaxlr.Task(init=..., loss_fn=..., data=..., "
                        "eval_data=...)")
    _LOADED[key] = task
    return task
