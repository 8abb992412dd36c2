"""The book's static outputs against plotly's and ipywidgets' own, and the builder's folder rules (no kernel)."""

import json
import re

import ipywidgets as W
import nbformat
import plotly.graph_objects as go
import plotly.io as pio
import pytest
from ipywidgets.embed import embed_data

from holomerge_lab.tour import book
from holomerge_lab.tour import book_outputs as static


def new_plot_arguments(fragment: str) -> list:
    """The JSON arguments of the `Plotly.newPlot(id, data, layout, config)` call in an HTML fragment."""
    decoder, rest = json.JSONDecoder(), fragment[fragment.index("Plotly.newPlot(") + len("Plotly.newPlot(") :]
    arguments = []
    while (rest := rest.lstrip(" \n\t,")) and not rest.startswith(")"):
        value, end = decoder.raw_decode(rest)
        arguments.append(value)
        rest = rest[end:]
    return arguments


def figure() -> go.Figure:
    fig = go.Figure(go.Bar(x=["holistic", "average"], y=[0.79, 0.74], error_y=dict(array=[0.01, 0.02])))
    fig.update_layout(title="ACC", height=380, yaxis=dict(range=[0.7, 0.8]))
    return fig


def notebook_bundle(fig: go.Figure) -> dict:
    """What a notebook cell outputs under `viz.setup_renderer()`'s renderer."""
    return pio.renderers["plotly_mimetype"].to_mimebundle(fig.to_dict())


def test_plotly_bundle_draws_what_plotly_to_html_draws():
    fig = figure()
    ours = static.plotly_html(notebook_bundle(fig)[static.PLOTLY_MIME])
    theirs = pio.to_html(fig, include_plotlyjs=False, full_html=False)
    _, data, layout, config = new_plot_arguments(ours)
    assert [data, layout, config] == new_plot_arguments(theirs)[1:]
    assert data[0]["y"] == [0.79, 0.74] and layout["height"] == 380
    assert 'style="height:380px' in ours  # the figure's own height, not a collapsed 100 %
    assert len(ours) < 50_000 and "plotly.js v" not in ours  # plotly.js is the page's, loaded once


def panel_notebook(*views: W.Widget, saved: bool = True) -> nbformat.NotebookNode:
    """A notebook whose one cell displayed `views`, with their whole widget state saved, as nbclient saves it."""
    notebook = nbformat.v4.new_notebook()
    outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={static.WIDGET_VIEW: {"model_id": v.model_id, "version_major": 2}, "text/plain": "VBox()"},
        )
        for v in views
    ]
    notebook.cells.append(nbformat.v4.new_code_cell("panel", outputs=outputs))
    if saved:
        notebook.metadata["widgets"] = {
            static.WIDGET_STATE: embed_data(views=list(views), drop_defaults=False)["manager_state"]
        }
    return notebook


def test_widget_panel_becomes_its_controls_and_its_figure():
    out = W.Output()
    out.outputs = ({"output_type": "display_data", "data": notebook_bundle(figure()), "metadata": {}},)
    controls = W.HBox([
        W.Checkbox(value=True, description="post"), W.Checkbox(value=False, description="pre"),
        W.FloatSlider(value=0.3, min=0, max=1, step=0.1, description="alpha"),
        W.Dropdown(options=["split-animal", "rotated-mnist"], value="rotated-mnist", description="stream"),
    ])  # fmt: skip
    panel = W.VBox(
        [
            controls,
            W.Button(description="Run"),
            W.HTML("<table class='hm-results'><tr><td>7</td></tr></table>"),
            out,
        ]
    )
    notebook = static.make_static(panel_notebook(panel))
    first, second = notebook.cells[0].outputs
    controls_html = first.data["text/html"]
    assert re.search(r'type="checkbox" disabled checked> post', controls_html)
    assert re.search(r'type="checkbox" disabled> pre', controls_html)
    assert 'value="0.3"' in controls_html and "<output>0.30</output>" in controls_html
    assert "<option selected>rotated-mnist</option>" in controls_html
    assert "<button" in controls_html and "<table class='hm-results'>" in controls_html
    assert 'class="hm-book-box hm-book-row"' in controls_html  # the HBox without an Output keeps its row
    assert new_plot_arguments(second.data["text/html"])[1][0]["y"] == [0.79, 0.74]
    assert "widgets" not in notebook.metadata
    assert all(static.WIDGET_VIEW not in o.get("data", {}) for o in notebook.cells[0].outputs)


def test_widget_without_saved_state_says_so():
    notebook = static.make_static(panel_notebook(W.VBox([W.Checkbox()]), saved=False))
    (output,) = notebook.cells[0].outputs
    assert "state was not saved" in output.data["text/html"]


def test_remote_images_become_their_alt_text():
    badge = "[![Open in Colab](https://colab.example/badge.svg)](https://colab.example/nb) ![map](figures/map.png)"
    assert (
        static.without_remote_images(badge)
        == "[Open in Colab](https://colab.example/nb) ![map](figures/map.png)"
    )
    assert static.without_remote_images('<img alt="Binder" src="https://x.example/b.svg"> ok') == "Binder ok"


def test_refuses_to_overwrite_a_folder_it_did_not_write(tmp_path):
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "thesis.tex").write_text("keep me")
    with pytest.raises(SystemExit, match="not a book folder"):
        book.clear_output_folder(precious)
    assert (precious / "thesis.tex").read_text() == "keep me"
    own = tmp_path / "book"
    book.clear_output_folder(own)
    (own / "old.html").write_text("an earlier build")
    book.clear_output_folder(own)
    assert sorted(p.name for p in own.iterdir()) == [book.MARKER]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book", "notes"]


def executed_copy(folder, name: str) -> None:
    """A notebook of the tour with one figure output, as if a run had executed it."""
    notebook = nbformat.read(book.NOTEBOOKS / name, as_version=4)
    cell = next(c for c in notebook.cells if c.cell_type == "code")
    cell.outputs = [nbformat.v4.new_output("display_data", data=notebook_bundle(figure()))]
    nbformat.write(notebook, folder / name)


def test_book_from_executed_copies_loads_nothing_remote(tmp_path):
    source, out, times = tmp_path / "executed", tmp_path / "book", tmp_path / "times.json"
    source.mkdir()
    executed_copy(source, "00_tour.ipynb")
    times.write_text(json.dumps({"notebooks": {"00_tour": {"seconds": 61.4, "completed": True, "live": {"seconds": 300}}}}))
    pages = book.build(out, ["00", "01", "08"], source=source, times=times)
    assert [p.kind for p in pages] == ["from", "unexecuted", "unexecuted"]
    tour = (out / "00_tour.html").read_text()
    assert tour.count('<script src="assets/plotly.min.js">') == 1 and "Plotly.newPlot(" in tour
    assert "needs a GPU" in (out / "08_clip_at_scale.html").read_text()
    assert "holds no executed copy" in (out / "01_tangent_space.html").read_text()
    for page in out.glob("*.html"):  # every script, style and image is a file of the book
        html = page.read_text()
        assert not re.search(r"""(src|href)=["'](https?:)?//[^"']*\.(js|css|svg|png)""", html), page.name
        for asset in re.findall(r'(?:src|href)="(assets/[^"?]+)', html):
            assert (out / asset).is_file(), asset
    front = (out / "index.html").read_text()
    assert front.index("00 ·") < front.index("01 ·") < front.index("08 ·")  # the reading order
    assert "runs in 61 s in normal mode (5 min live)" in front and front.count("run time not measured") == 2
    assert "min to read" in front and "Fast-mode preview" not in front
    assert "<em>holistic</em>" in front  # the question, as markdown renders it


def test_command_line_renders_from_a_folder_with_given_times(tmp_path, capsys):
    source, out, times = tmp_path / "executed", tmp_path / "book", tmp_path / "times.json"
    source.mkdir()
    executed_copy(source, "00_tour.ipynb")
    times.write_text(json.dumps({"notebooks": {"00_tour": {"seconds": 1500, "completed": False}}}))
    argv = ["--from", str(source), "--notebooks", "00", "--out", str(out), "--times", str(times)]
    assert book.main(argv) == 0
    assert "runs in 25 min in normal mode, stopped by an error" in (out / "index.html").read_text()
    assert f"--from {source}" in (out / "index.html").read_text()  # the command that built it
    assert (out / "00_tour.ipynb").is_file() and "book:" in capsys.readouterr().out


def test_a_notebook_that_fails_is_rendered_up_to_its_error(tmp_path):
    """A real kernel, fast mode: the page shows the outputs before the error, the error, and says it stopped."""
    notebooks, out = tmp_path / "notebooks", tmp_path / "book"
    notebooks.mkdir()
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# 00 · A failing chapter\n\n**Question.** Does the book say so?"),
        nbformat.v4.new_code_cell("import os\nprint('fast mode:', os.environ.get('HOLOMERGE_FAST'))"),
        nbformat.v4.new_code_cell("raise ValueError('boom')"),
        nbformat.v4.new_code_cell("print('never reached')"),
    ]
    nbformat.write(notebook, notebooks / "00_failing.ipynb")
    (page,) = book.build(out, mode="fast", notebooks=notebooks, times=tmp_path / "none.json")
    assert page.failed and "boom" in page.failed
    html = (out / "00_failing.html").read_text()
    assert "ValueError" in html and html.count("never reached") == 1  # in the source; the cell never ran
    assert html.count("fast mode: 1") == 1 and "It stopped with an error" in html
    assert "Fast-mode preview" in html and "Does the book say so?" in (out / "index.html").read_text()
