"""The LR range test, on the engine (numpy rules apart from ``find_lr``)."""

from jaxlr._finder.finder import FinderResult, find_lr

__all__ = ["FinderResult", "find_lr"]
