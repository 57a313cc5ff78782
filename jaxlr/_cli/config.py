"""``--config FILE.toml`` and ``--print-config`` for the ``jaxlr`` command.

A config file holds a command's options as TOML keys named like the flags (``batch-size =
128``, ``lr = "1e-4:1:16"`` or ``lr = [1e-3, 1e-2]``, ``nesterov = true``, ``task-option =
{channels = 16}``); the flags given on the command line override it. ``--print-config``
prints every option of the run (defaults filled in) as such a file and exits: saved, it
reproduces the run with ``--config``. Read with ``tomllib`` (``tomli`` before Python 3.11),
written with ``tomli-w``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from jaxlr._cli.tasks import UsageError

SKIP = ("config", "print_config", "command", "help")  # not options of a run


def _actions(sub: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in sub._actions if a.dest not in SKIP and a.option_strings}


def read(path: str, sub: argparse.ArgumentParser) -> dict[str, Any]:
    """The options of ``path`` as argparse defaults of ``sub`` (values as the flags take
    them: strings, comma lists, booleans). Raises UsageError naming the key and the fix."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as e:
        raise UsageError(f"--config {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"--config {path} is not valid TOML: {e}") from None
    actions = _actions(sub)
    out: dict[str, Any] = {}
    for key, value in data.items():
        dest = key.replace("-", "_")
        action = actions.get(dest)
        if action is None:
            valid = ", ".join(sorted(k.replace("_", "-") for k in actions))
            raise UsageError(f"--config {path}: unknown option {key!r}; the options of this "
                             f"command are: {valid}")
        out[dest] = _value(path, key, value, action)
    return out


def _value(path: str, key: str, value: Any, action: argparse.Action) -> Any:
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise UsageError(f"--config {path}: {key} must be true or false, got {value!r}")
        return value
    if isinstance(action, argparse._AppendAction):  # --task-option: a table or a list
        if isinstance(value, dict):
            return [f"{k}={json.dumps(v)}" for k, v in value.items()]
        return [str(v) for v in (value if isinstance(value, list) else [value])]
    if isinstance(value, (dict, bool)):
        raise UsageError(f"--config {path}: {key} must be a number, a string or a list, got "
                         f"{value!r}")
    if isinstance(value, list):
        value = ",".join(repr(v) if isinstance(v, float) else str(v) for v in value)
    return action.type(value) if action.type is not None else str(value)


def dump(ns: argparse.Namespace, sub: argparse.ArgumentParser) -> str:
    """Every option of the parsed command ``ns`` as a TOML config file."""
    import tomli_w

    values = {}
    for dest, action in _actions(sub).items():
        value = getattr(ns, dest, None)
        if value is None or (value is False and isinstance(action, argparse._StoreTrueAction)
                             and dest in ("json",)):
            continue
        values[dest.replace("_", "-")] = _number_or_string(value)
    return f"# jaxlr {ns.command}: run it with  jaxlr {ns.command} --config FILE\n" + (
        tomli_w.dumps(values))


def _number_or_string(value: Any) -> Any:
    """A flag's string as the TOML number it spells (``"128"`` -> 128), else unchanged."""
    if not isinstance(value, str):
        return value
    for kind in (int, float):
        try:
            number = kind(value)
        except ValueError:
            continue
        return number if str(number) == value or kind is float else value
    return value
