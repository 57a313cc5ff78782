"""Every public docstring's Example runs and prints what it says (doctest)."""

import doctest
import importlib
import pkgutil

import pytest

import jaxlr

MODULES = sorted(m.name for m in pkgutil.iter_modules(jaxlr.__path__, "jaxlr."))


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
