"""MkDocs hooks of jaxlr's site (``hooks:`` in mkdocs.yml).

- ``<!-- jaxlr:gallery -->`` (docs/gallery.md): every panel of
  ``examples/02_schedules_gallery.py`` drawn as its own PNG when the site is built (the example's
  ``gallery()``, ``traced_panel()`` and ``plateau_panel()``; the figures are generated files of
  the build, nothing is written into docs/), plus a ``tabulated`` panel. A schedule of
  ``jaxlr.__all__`` that no panel draws is a warning.
- ``<!-- jaxlr:cli-help -->``: ``jaxlr --help`` and each command's ``--help``, from the
  command's own argument parser (``jaxlr._cli.commands.build_parser``).
- ``<!-- jaxlr:readme "Title" -->``: the body of the README's section ``## Title``, verbatim.
- Formulas: pymdownx.arithmatex marks ``\\( ... \\)`` and ``$$ ... $$`` (the docstrings'
  ``:math:`` and ``.. math::``, rewritten by ``griffe_jaxlr.py``); ``on_post_page`` turns them
  into MathML with latex2mathml, so the site renders maths with no script and nothing fetched.

Every problem (a placeholder that cannot be filled, a formula that does not convert) is
logged as a warning, so ``mkdocs build --strict`` fails on it. ``JAXLR_DOCS_GALLERY=0`` skips
drawing the gallery (faster ``mkdocs serve`` while editing; the page then says so).
"""

from __future__ import annotations

import ast
import html
import importlib.util
import inspect
import io
import logging
import os
import re
import textwrap
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.hooks.jaxlr_docs")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "02_schedules_gallery.py"
GALLERY_DIR = "gallery"  # the generated PNGs' folder in the site, beside gallery/index.html

_state: dict[str, Any] = {}


# --------------------------------------------------------------------------- the gallery


def _load_example() -> Any:
    spec = importlib.util.spec_from_file_location("_jaxlr_docs_gallery_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _panel_sources(source: str) -> list[str]:
    """The source of each ``(title, ours, theirs)`` tuple that ``gallery()`` returns."""
    tree = ast.parse(source)
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "gallery")
    ret = next(n for n in ast.walk(fn) if isinstance(n, ast.Return))
    out = []
    for elt in ret.value.elts:
        seg = ast.get_source_segment(source, elt)
        out.append(textwrap.dedent(" " * elt.col_offset + seg))
    return out


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96)
    return buf.getvalue()


def _figure() -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 3.3), layout="constrained")
    ax = fig.subplots()
    ax.grid(alpha=0.3)
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    return fig, ax


def _section(heading: str, image: str, alt: str, text: str, code: str) -> str:
    body = textwrap.indent(f"```python\n{code.rstrip()}\n```", "    ")
    return (f"## {heading}\n\n![{alt}]({image})\n\n{text}\n\n"
            f'??? example "Code"\n\n{body}\n')


def _schedule_names() -> list[str]:
    import jaxlr

    return [n for n in jaxlr.__all__
            if getattr(getattr(jaxlr, n), "__module__", "") == "jaxlr._optim.schedules"]


def _draw_gallery() -> tuple[str, dict[str, bytes]]:
    os.environ.setdefault("JAX_PLATFORMS", "cpu")  # the curves are tiny; never grab a GPU
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxlr

    mod = _load_example()
    steps = jnp.arange(mod.T)
    panels = mod.gallery()
    sources = _panel_sources(EXAMPLE.read_text(encoding="utf-8"))
    public = set(jaxlr.__all__)
    drawn: set[str] = set()
    sections, images = [], {}

    for (title, ours, theirs), code in zip(panels, sources, strict=True):
        name = title.split("(")[0].strip()
        fig, ax = _figure()
        for i, (label, sched) in enumerate(ours.items()):
            ax.plot(steps, np.asarray(jax.jit(sched)(steps)), color=f"C{i}", lw=1.8, label=label)
        diffs = []
        for i, sched in enumerate(theirs.values()):
            ref = np.asarray(jax.vmap(sched)(steps))
            ax.plot(steps, ref, color="black", lw=1.0, ls=":", label="optax" if i == 0 else None)
            mine_label, mine = list(ours.items())[i]
            diff = float(np.max(np.abs(np.asarray(jax.jit(mine)(steps)) - ref)))
            diffs.append(f"{mine_label}: {diff:.1e}" if len(theirs) > 1 else f"{diff:.1e}")
        ax.set_title(title.strip(), fontsize=10)
        ax.legend(fontsize=8)
        image = f"{GALLERY_DIR}/{name}.png"
        images[image] = _png(fig)
        heading = f"[`{name}`][jaxlr.{name}]" if name in public else f"`{name}`"
        drawn.update(n for n in re.findall(r"jaxlr\.(\w+)\(", code) if n in public)
        text = (f"`{title.strip()}` over {mod.T} steps. "
                + (f"Dotted: optax's schedule; largest difference "
                   f"|jaxlr - optax| {', '.join(diffs)}." if diffs
                   else "Not drawn against optax (the example does so only where optax has "
                        "the schedule with the same semantics)."))
        sections.append(_section(heading, image, title.strip(), text, code))

    # the example's two panels that only jaxlr can draw
    fig, ax = _figure()
    for i, (label, curve) in enumerate(mod.traced_panel(steps).items()):
        ax.plot(steps, curve, color=f"C{i}", lw=1.5, label=label)
    ax.set_title("traced parameters: vmap, one compile", fontsize=10)
    ax.legend(fontsize=8)
    images[f"{GALLERY_DIR}/traced.png"] = _png(fig)
    sections.append(_section(
        "Traced parameters", f"{GALLERY_DIR}/traced.png", "traced parameters",
        "`jax.vmap` over `warmup_steps` and over one-cycle's `pct_start`: five curves from two "
        "compiled functions (optax cannot trace these parameters).",
        inspect.getsource(mod.traced_panel)))

    loss, lrs = mod.plateau_panel()
    fig, ax = _figure()
    ax.plot(steps, lrs, color="C3", lw=1.8, label="LR")
    twin = ax.twinx()
    twin.plot(steps, loss, color="0.6", lw=0.8)
    twin.set_ylabel("metric (grey)")
    ax.set_title("reduce_on_plateau(warmup(constant))", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    images[f"{GALLERY_DIR}/plateau.png"] = _png(fig)
    cuts = int(np.sum(np.diff(lrs) < 0))
    sections.append(_section(
        "[`reduce_on_plateau`][jaxlr.reduce_on_plateau] after a warmup",
        f"{GALLERY_DIR}/plateau.png", "reduce on plateau after a warmup",
        "A controller, not a schedule: its state is advanced by a metric (here a synthetic "
        "loss that stops improving at 1.0) inside `jax.lax.scan`, exactly as an optimizer "
        f"does. It cut the LR {cuts} times; final LR {lrs[-1]:.2e}.",
        inspect.getsource(mod.plateau_panel)))
    drawn.update({"reduce_on_plateau", "warmup", "constant", "one_cycle", "cosine_decay"})

    # tabulated: this hook's own panel (what SweepResult.schedule returns after PBT)
    T, LR = mod.T, mod.LR  # noqa: N806 - the example's names
    code = "jaxlr.tabulated(np.repeat([LR, 1.25 * LR, LR, 0.8 * LR, 0.64 * LR], T // 6))"
    sched = eval(code, {"jaxlr": jaxlr, "np": np, "T": T, "LR": LR})  # noqa: S307 - our text
    fig, ax = _figure()
    ax.plot(steps, np.asarray(jax.jit(sched)(steps)), color="C0", lw=1.8, label="tabulated")
    ax.axvline(5 * (T // 6), color="0.5", ls="--", lw=0.8, label="end of the table")
    ax.set_title("tabulated(a table of per-step values)", fontsize=10)
    ax.legend(fontsize=8)
    images[f"{GALLERY_DIR}/tabulated.png"] = _png(fig)
    sections.append(_section(
        "[`tabulated`][jaxlr.tabulated]", f"{GALLERY_DIR}/tabulated.png", "tabulated",
        f"A table of {5 * (T // 6)} per-step values (the kind of LR trajectory that "
        "[`SweepResult.schedule`][jaxlr.SweepResult.schedule] returns after population-based "
        "training): step `t` reads entry `t`, and steps past the end keep the last value. "
        "This panel is the hook's own (not in the example).", code))
    drawn.add("tabulated")

    missing = sorted(set(_schedule_names()) - drawn)
    if missing:
        log.warning("the schedule gallery draws no panel for %s: add one to "
                    "examples/02_schedules_gallery.py's gallery()", ", ".join(missing))
    return "\n".join(sections), images


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    if os.environ.get("JAXLR_DOCS_GALLERY") == "0":
        _state["gallery"] = ('!!! note "Gallery skipped"\n    JAXLR_DOCS_GALLERY=0 was set '
                             "when this site was built: the figures were not drawn.\n")
        return files
    try:
        markdown, images = _draw_gallery()
    except Exception as e:  # noqa: BLE001 - any failure: a warning, so --strict fails
        log.warning("the schedule gallery could not be drawn: %s: %s", type(e).__name__, e)
        _state["gallery"] = "*The gallery could not be drawn when this site was built.*\n"
        return files
    for uri, content in images.items():
        files.append(File.generated(config, uri, content=content))
    _state["gallery"] = markdown
    return files


# --------------------------------------------------------------------------- CLI and README


def _cli_help() -> str:
    from jaxlr._cli.commands import build_parser

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal; make it fixed
    try:
        parser = build_parser()
        helps = [("jaxlr", parser.format_help())]
        helps += [(f"jaxlr {name}", sub.format_help()) for name, sub in parser.subcommands.items()]
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old
    out = []
    for title, text in helps:
        block = textwrap.indent(f"```text\n$ {title} --help\n{text.rstrip()}\n```", "    ")
        out.append(f'=== "{title}"\n\n{block}\n')
    return "\n".join(out)


def _readme_section(title: str) -> str | None:
    """The body of README.md's ``## title``; its nested list items (indented by 2 spaces, as
    GitHub reads them) indented by 4, as Python-Markdown needs."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(rf"^## {re.escape(title)}[ \t]*\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    if not m:
        return None
    lines, fenced = [], False
    for line in m.group(1).strip().split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        item = re.match(r"^( +)([-*+] |\d+\. )", line)
        if item and not fenced:
            line = item.group(1) * 2 + line.lstrip(" ")
        lines.append(line)
    return "\n".join(lines) + "\n"


_README = re.compile(r'<!-- jaxlr:readme "([^"]+)" -->')


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    where = page.file.src_uri
    if "<!-- jaxlr:gallery -->" in markdown:
        markdown = markdown.replace("<!-- jaxlr:gallery -->", _state.get("gallery", ""))
    if "<!-- jaxlr:cli-help -->" in markdown:
        try:
            markdown = markdown.replace("<!-- jaxlr:cli-help -->", _cli_help())
        except Exception as e:  # noqa: BLE001
            log.warning("%s: jaxlr --help could not be generated: %s: %s", where,
                        type(e).__name__, e)

    def readme(m: re.Match) -> str:
        body = _readme_section(m.group(1))
        if body is None:
            log.warning('%s: README.md has no section "## %s"', where, m.group(1))
            return ""
        return body

    return _README.sub(readme, markdown)


# --------------------------------------------------------------------------- maths -> MathML

_INLINE = re.compile(r'<span class="arithmatex">\\\((.*?)\\\)</span>', re.S)
_BLOCK = re.compile(r'<div class="arithmatex">\\\[(.*?)\\\]</div>', re.S)


def on_post_page(output: str, page: Any, config: Any) -> str:
    from latex2mathml.converter import convert

    where = page.file.src_uri

    def mathml(display: str):
        def sub(m: re.Match) -> str:
            latex = html.unescape(m.group(1)).strip()
            try:
                out = convert(latex, display=display)
            except Exception as e:  # noqa: BLE001 - said, with the formula
                log.warning("%s: formula not converted to MathML (%s: %s): %s", where,
                            type(e).__name__, e, latex)
                return m.group(0)
            if "<mi>&</mi>" in out:  # an alignment & outside an environment latex2mathml knows
                log.warning("%s: formula with a stray '&' (use \\begin{split}): %s", where,
                            latex)
            return out
        return sub

    if "arithmatex" in output:
        output = _BLOCK.sub(mathml("block"), output)
        output = _INLINE.sub(mathml("inline"), output)
    return output
