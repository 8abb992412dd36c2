"""A function's own code, for a notebook to show beside the equation it implements.

The notebooks teach the method from the package's code, not from a copy of it: what a reader sees is what runs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable


def show(function: Callable, *, docstring: bool = True) -> str:
    """The source of `function` as it is defined in the package, with a header naming its module and first line;
    `docstring=False` leaves the docstring out (the notebook's prose says the same)."""
    function = inspect.unwrap(function)
    lines, first = inspect.getsourcelines(function)
    text = "".join(lines)
    doc = inspect.getdoc(function)
    if not docstring and doc:
        text = _without_docstring(text)
    module = inspect.getmodule(function)
    name = f"{module.__name__}.{function.__qualname__}" if module else function.__qualname__
    return f"# {name}  ({inspect.getsourcefile(function).rsplit('/', 1)[-1]}, line {first})\n{text.rstrip()}"


def _without_docstring(text: str) -> str:
    """The definition with its first triple-quoted block removed."""
    for quote in ('"""', "'''"):
        start = text.find(quote)
        if start != -1:
            end = text.find(quote, start + 3)
            line_start = text.rfind("\n", 0, start) + 1
            line_end = text.find("\n", end + 3)
            return text[:line_start] + text[line_end + 1 :]
    return text
