"""Every public docstring's Example runs and prints what it says (doctest)."""

import doctest
import importlib
import pkgutil

import pytest

import jaxlr

MODULES = sorted(m.name for m in pkgutil.walk_packages(jaxlr.__path__, "jaxlr.")
                 if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest failures in {name}"


def test_every_public_function_has_an_example_and_references():
    missing = []
    for name in jaxlr.__all__ if hasattr(jaxlr, "__all__") else dir(jaxlr):
        obj = getattr(jaxlr, name)
        if name.startswith("_") or not callable(obj) or isinstance(obj, type):
            continue
        doc = obj.__doc__ or ""
        if "Example" not in doc or "References" not in doc or "Returns" not in doc:
            missing.append(name)
    assert not missing, f"docstrings without Returns/Example/References: {missing}"


def test_every_public_class_has_a_summary_attributes_and_an_example():
    """Classes in jaxlr.__all__: a one-line summary ending in a period (not the generated
    ``Name(field, ...)`` of a NamedTuple), an ``Args:`` or ``Attributes:`` section and an
    ``Example`` (which test_docstring_examples runs)."""
    missing = {}
    for name in jaxlr.__all__:
        obj = getattr(jaxlr, name)
        if not isinstance(obj, type):
            continue
        doc = obj.__dict__.get("__doc__") or ""  # its own, not a base class's
        lines = doc.strip().splitlines()
        problems = []
        if not lines or not lines[0].strip().endswith(".") or lines[0].startswith(f"{name}("):
            problems.append("summary")
        if "Args:" not in doc and "Attributes:" not in doc:
            problems.append("Args/Attributes")
        if "Example" not in doc:
            problems.append("Example")
        if problems:
            missing[name] = problems
    assert not missing, f"public classes whose docstring lacks: {missing}"
