"""A griffe extension (mkdocs.yml: mkdocstrings' ``extensions``): jaxlr's docstrings in Markdown.

jaxlr's docstrings are Google style with a few Sphinx constructs, which Markdown does not know:

- ``:func:`x```, ``:meth:``, ``:class:``, ``:attr:``, ``:mod:``, ``:data:``, ``:exc:``,
  ``:obj:`` (a leading ``~`` shows the last name only): a cross-reference link to the object's
  entry in the API reference when the reference documents it (a ``::: path`` line of
  docs/api/*.md, or a public member of such a class), found as written, relative to the class
  the docstring is in, or under ``jaxlr.``; otherwise inline code;
- ``Example:`` (a section griffe's Google parser does not know) becomes ``Examples:``;
- ``:math:`...``` becomes ``\\( ... \\)`` and a ``.. math::`` block ``$$ ... $$`` (in an
  ``split`` environment when it has ``\\\\`` or ``&``, as Sphinx does), which
  pymdownx.arithmatex marks and docs/hooks/jaxlr_docs.py turns into MathML.

Only the docstrings of the ``jaxlr`` package are rewritten, once, after it is loaded. It also
points ``jaxlr.grid``, ``jaxlr.diagnose`` and ``jaxlr.hypergradient`` at the functions, not at
the submodules of the same name (see ``_unshadow``).
"""

from __future__ import annotations

import logging
import re
import textwrap
from pathlib import Path
from typing import Any

import griffe

log = logging.getLogger("mkdocs.plugins.griffe_jaxlr")  # a warning here fails --strict

API_PAGES = Path(__file__).resolve().parents[1] / "api"

_ROLE = re.compile(r":(?:py:)?(func|meth|class|attr|mod|data|exc|obj|const):`([^`]+)`")
_MATH = re.compile(r":math:`([^`]+)`")
_DIRECTIVE = re.compile(r"^(\s*)\.\. math::[ \t]*(.*)$")
_SECTIONS = "Args|Arguments|Returns|Raises|Yields|Attributes|Example|Examples|References"
_TITLE = re.compile(rf"^({_SECTIONS}):[ \t]*$", re.M)
_INDENTED_TITLE = re.compile(rf"^[ \t]+({_SECTIONS}):[ \t]*$", re.M)


def documented_paths() -> list[str]:
    """The objects the API reference renders: the ``::: path`` lines of docs/api/*.md."""
    out = []
    for page in sorted(API_PAGES.glob("*.md")):
        out += re.findall(r"^:::\s+(\S+)", page.read_text(encoding="utf-8"), re.M)
    return out


def _math_blocks(text: str) -> str:
    """``.. math::`` directives -> ``$$`` blocks (one per blank-line-separated equation)."""
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        m = _DIRECTIVE.match(lines[i])
        if not m:
            out.append(lines[i])
            i += 1
            continue
        indent, first = len(m.group(1)), m.group(2).strip()
        i += 1
        body = []
        while i < len(lines) and (not lines[i].strip()
                                  or len(lines[i]) - len(lines[i].lstrip()) > indent):
            body.append(lines[i])
            i += 1
        trailing = 0
        while body and not body[-1].strip():
            body.pop()
            trailing += 1
        content = ([first] if first else []) + textwrap.dedent("\n".join(body)).split("\n")
        equations = re.split(r"\n\s*\n", "\n".join(content).strip())
        pad = " " * indent
        for eq in equations:
            eq = eq.strip()
            if "\\\\" in eq or "&" in eq:
                eq = "\\begin{split}\n" + eq + "\n\\end{split}"
            out += ["", pad + "$$", *(pad + line for line in eq.split("\n")), pad + "$$", ""]
        out += [""] * trailing
    return "\n".join(out)


class JaxlrDocstrings(griffe.Extension):
    """Rewrite the Sphinx roles and math of jaxlr's docstrings into Markdown (see the module)."""

    def __init__(self) -> None:
        self._done: set[int] = set()

    # ----------------------------------------------------------------- resolution

    def _setup(self, pkg: Any) -> None:
        self.pkg = pkg
        self.documented: set[str] = set()
        self.classes: set[str] = set()
        self.by_canonical: dict[str, str] = {}
        for path in documented_paths():
            obj = self._lookup(path)
            if obj is None:
                continue  # mkdocstrings itself reports a path it cannot find
            self.documented.add(path)
            target = obj.final_target if obj.is_alias else obj
            self.by_canonical.setdefault(target.path, path)
            if target.is_class:
                self.classes.add(path)

    def _lookup(self, path: str) -> Any:
        if path == self.pkg.path:
            return self.pkg
        if not path.startswith(self.pkg.path + "."):
            return None
        try:
            return self.pkg[path[len(self.pkg.path) + 1:]]
        except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            return None

    def _is_documented(self, path: str) -> bool:
        """Rendered by the reference: a ``:::`` path, or a public member of such a class that
        has a docstring (mkdocstrings leaves out members without one)."""
        if path in self.documented:
            return True
        parent, _, name = path.rpartition(".")
        if parent not in self.classes or name.startswith("_"):
            return False
        member = self._lookup(path)
        try:
            return member is not None and bool(member.docstring)
        except (griffe.AliasResolutionError, griffe.CyclicAliasError):
            return False

    def _resolve(self, target: str, obj: Any) -> str | None:
        candidates = [target]
        scope = obj
        while scope is not None:  # relative to the documented class holding the docstring
            doc = self.by_canonical.get(scope.path)
            if doc in self.classes:
                candidates.append(f"{doc}.{target}")
            scope = scope.parent
        candidates.append(f"{self.pkg.path}.{target}")
        candidates.append(f"{obj.module.path}.{target}")
        for c in candidates:
            c = self._public(c)
            if self._is_documented(c):
                return c
        return None

    def _public(self, path: str) -> str:
        """A canonical path (``jaxlr._sweep.result.SweepResult.best``) as the reference
        documents it (``jaxlr.SweepResult.best``); other paths unchanged."""
        head, rest = path, ""
        while head:
            if head in self.by_canonical:
                return self.by_canonical[head] + rest
            head, _, name = head.rpartition(".")
            rest = f".{name}{rest}"
        return path

    # ----------------------------------------------------------------- rewriting

    def _rewrite(self, text: str, obj: Any) -> str:
        # griffe's Google parser knows "Examples:", not "Example:" (which it would render as an
        # admonition of Markdown, doctest lines and all)
        text = re.sub(r"^Example:[ \t]*$", "Examples:", text, flags=re.M)
        text = _math_blocks(text)
        text = _MATH.sub(lambda m: "\\(" + re.sub(r"\s*\n\s*", " ", m.group(1)) + "\\)", text)

        def role(m: re.Match) -> str:
            raw = m.group(2).strip()
            short = raw.startswith("~")
            target = raw.lstrip("~.").removesuffix("()")
            shown = target.rsplit(".", 1)[-1] if short else raw.lstrip("~")
            path = self._resolve(target, obj)
            return f"[`{shown}`][{path}]" if path else f"`{shown}`"

        return _ROLE.sub(role, text)

    def _walk(self, obj: Any) -> None:
        if obj.is_alias or id(obj) in self._done:
            return
        self._done.add(id(obj))
        if obj.docstring is not None:
            value = obj.docstring.value
            if _INDENTED_TITLE.search(value) and not _TITLE.search(value):
                # a line less indented than the rest keeps the whole docstring indented after
                # inspect.cleandoc, and its Google sections are then read as plain text
                log.warning("%s:%s: the docstring of %s has its sections (Args:, Returns:, ...) "
                            "indented: is one of its lines less indented than the others?",
                            obj.relative_filepath, obj.docstring.lineno, obj.path)
            obj.docstring.value = self._rewrite(value, obj)
        for member in obj.members.values():
            self._walk(member)

    def _unshadow(self, pkg: Any) -> None:
        """``jaxlr.grid`` is the function ``grid`` that ``jaxlr._sweep`` imports from its
        submodule ``grid`` (so do ``diagnose`` and ``hypergradient``); griffe resolves the name
        to the submodule, as its static analysis sees it. Point such a top-level alias at the
        submodule's member of the same name, which is what Python binds."""
        for name, member in pkg.members.items():
            if not member.is_alias or name.startswith("_"):
                continue
            try:
                target = member.final_target
            except (griffe.AliasResolutionError, griffe.CyclicAliasError):
                continue
            inner = target.members.get(name) if target.is_module else None
            if inner is not None and not inner.is_module:
                member.target = inner.final_target if inner.is_alias else inner

    def _package(self, pkg: Any) -> None:
        if pkg.name != "jaxlr" or id(pkg) in self._done:
            return
        self._unshadow(pkg)
        self._setup(pkg)
        self._walk(pkg)


if hasattr(griffe.Extension, "on_package"):
    def _on_package(self: JaxlrDocstrings, *, pkg: Any, **kwargs: Any) -> None:
        self._package(pkg)

    JaxlrDocstrings.on_package = _on_package
else:  # griffe < 1.14
    def _on_package_loaded(self: JaxlrDocstrings, *, pkg: Any, **kwargs: Any) -> None:
        self._package(pkg)

    JaxlrDocstrings.on_package_loaded = _on_package_loaded
