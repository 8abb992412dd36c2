"""source.show prints the package's own code: the text a notebook shows is the text Python runs."""

import inspect

from holomerge_lab.analysis import landscape
from holomerge_lab.method import merging
from holomerge_lab.tour import source


def test_show_is_the_function_source_with_its_place():
    text = source.show(merging.merge_v_weighted)
    header, body = text.split("\n", 1)
    lines, first = inspect.getsourcelines(merging.merge_v_weighted)
    assert body == "".join(lines).rstrip()
    assert header == f"# holomerge_lab.method.merging.merge_v_weighted  (merging.py, line {first})"


def test_show_without_docstring_keeps_the_code():
    full = source.show(landscape.vector_norm)
    short = source.show(landscape.vector_norm, docstring=False)
    assert inspect.getdoc(landscape.vector_norm) not in short and inspect.getdoc(landscape.vector_norm) in full
    assert short.splitlines()[-1] == full.splitlines()[-1]  # the return line stays
    compile(short.split("\n", 1)[1], "<shown>", "exec")  # still valid Python
