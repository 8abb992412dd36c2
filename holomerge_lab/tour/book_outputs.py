"""A notebook's live outputs as static HTML, for the book: plotly figures drawn by plotly.js, widgets as their state.

Why: the notebooks show figures through plotly's `plotly_mimetype` renderer (a JSON bundle that JupyterLab draws)
and put their figures and tables inside ipywidgets panels, whose content lives in the notebook's saved widget state,
not in its outputs. A static page has no kernel and no JupyterLab renderers, so both become plain HTML here: the
plotly bundle becomes plotly's own `<div>` + `Plotly.newPlot` script (plotly.js is loaded once by the page), and a
widget becomes its controls, disabled, at the values they had, with what its `Output` widgets held spliced in as
ordinary outputs. Remote images (the Colab and Binder badges) become their alt text: the book loads nothing remote.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import nbformat
import plotly.io as pio

PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
BOXES = {"VBoxModel": "column", "HBoxModel": "row", "BoxModel": "row", "GridBoxModel": "row"}
TEXT_INPUTS = {
    "TextModel", "TextareaModel", "PasswordModel", "IntTextModel", "FloatTextModel", "BoundedIntTextModel",
    "BoundedFloatTextModel",
}  # fmt: skip
SELECTIONS = {
    "DropdownModel", "RadioButtonsModel", "ToggleButtonsModel", "SelectModel", "SelectMultipleModel",
    "SelectionSliderModel", "SelectionRangeSliderModel",
}  # fmt: skip
NOTE = (
    '<p class="hm-book-note">A snapshot of an interactive panel: its controls are shown at the values they had '
    "when the notebook ran, and work when the notebook runs (JupyterLab, Colab, Binder).</p>"
)
REMOTE_MARKDOWN_IMAGE = re.compile(r"!\[([^\]]*)\]\((?:https?:)?//[^)\s]*(?:\s+\"[^\"]*\")?\)")
REMOTE_HTML_IMAGE = re.compile(r"<img\b[^>]*\bsrc=[\"'](?:https?:)?//[^>]*>", re.IGNORECASE)


def plotly_html(bundle: dict, default_height: str = "500px") -> str:
    """The figure of a `plotly_mimetype` bundle as the `<div>` and script plotly.io.to_html writes, without
    plotly.js (the page loads it once)."""
    figure = {key: bundle[key] for key in ("data", "layout", "frames") if key in bundle}
    return pio.to_html(
        figure, config=bundle.get("config"), include_plotlyjs=False, full_html=False, validate=False,
        default_height=default_height,
    )  # fmt: skip


def _model_id(reference: str) -> str:
    return reference.removeprefix("IPY_MODEL_")


def _readout(state: dict) -> str:
    value, spec = state.get("value"), state.get("readout_format")
    if isinstance(value, list):
        return " – ".join(_readout({**state, "value": v}) for v in value)
    try:
        return format(value, spec.lstrip("%")) if spec and isinstance(value, float) else str(value)
    except ValueError:
        return str(value)


def control_html(name: str, state: dict) -> str:
    """One leaf widget at its saved value, disabled: a picture of the control, not a working one."""
    text = html.escape(str(state.get("description") or ""))
    label = f'<span class="hm-book-label">{text}</span> ' if text else ""
    if name in ("CheckboxModel", "ToggleButtonModel"):
        checked = " checked" if state.get("value") else ""
        return f'<label class="hm-book-control"><input type="checkbox" disabled{checked}> {text}</label>'
    if name in SELECTIONS:
        labels, chosen = state.get("_options_labels", []), state.get("index")
        chosen = set(chosen) if isinstance(chosen, list) else {chosen}
        options = "".join(
            f"<option{' selected' if i in chosen else ''}>{html.escape(str(o))}</option>"
            for i, o in enumerate(labels)
        )
        return f'<label class="hm-book-control">{label}<select disabled>{options}</select></label>'
    if name.endswith("SliderModel"):
        value = state.get("value")
        first = value[0] if isinstance(value, list) else value
        return (
            f'<label class="hm-book-control">{label}<input type="range" disabled min="{state.get("min", 0)}" '
            f'max="{state.get("max", 100)}" step="{state.get("step", 1)}" value="{first}"> '
            f"<output>{html.escape(_readout(state))}</output></label>"
        )
    if name in TEXT_INPUTS:
        value = html.escape(str(state.get("value", "")), quote=True)
        return f'<label class="hm-book-control">{label}<input type="text" disabled value="{value}"></label>'
    if name == "ButtonModel":
        return f'<button class="hm-book-control" disabled>{text}</button>'
    if name in ("HTMLModel", "HTMLMathModel"):  # written by the notebook's own code: shown as it showed
        return f'<div class="hm-book-control">{label}{state.get("value", "")}</div>'
    if name == "LabelModel":
        return f'<span class="hm-book-control">{html.escape(str(state.get("value", "")))}</span>'
    if name in ("IntProgressModel", "FloatProgressModel"):
        return (
            f'<label class="hm-book-control">{label}<progress max="{state.get("max", 100)}" '
            f'value="{state.get("value", 0)}"></progress></label>'
        )
    kind = html.escape(name.removesuffix("Model"))
    return (
        f'<span class="hm-book-control hm-book-note">[{kind} {text}: works only in a running notebook]</span>'
    )


def _holds_output(model_id: str, models: dict) -> bool:
    model = models.get(model_id)
    if model is None:
        return False
    if model["model_name"] == "OutputModel":
        return True
    return any(_holds_output(_model_id(c), models) for c in model["state"].get("children", []))


def _pieces(model_id: str, models: dict) -> Iterator[str | nbformat.NotebookNode]:
    """A widget tree in reading order: HTML strings for controls, notebook outputs for what Output widgets hold.
    A box that holds an Output is laid out one child after another; any other box keeps its row or column."""
    model = models.get(model_id)
    if model is None:
        yield '<p class="hm-book-note">[a widget whose state was not saved with this notebook]</p>'
        return
    name, state = model["model_name"], model["state"]
    if name == "OutputModel":
        yield from static_outputs([nbformat.from_dict(o) for o in state.get("outputs", [])], models)
    elif name in BOXES and any(_holds_output(_model_id(c), models) for c in state.get("children", [])):
        for child in state["children"]:
            yield from _pieces(_model_id(child), models)
    elif name in BOXES:
        inner = "".join(p for c in state.get("children", []) for p in _pieces(_model_id(c), models))
        yield f'<div class="hm-book-box hm-book-{BOXES[name]}">{inner}</div>'
    else:
        yield control_html(name, state)


def widget_outputs(view: dict, models: dict) -> list[nbformat.NotebookNode]:
    """The outputs that stand for one widget view: runs of controls as one HTML output each (the first with a note
    saying they are a snapshot), the Output widgets' own outputs between them."""
    outputs: list[nbformat.NotebookNode] = []
    run: list[str] = []
    noted = False

    def flush() -> None:
        nonlocal noted
        if run:
            body = ("" if noted else NOTE) + "".join(run)
            outputs.append(
                nbformat.v4.new_output(
                    "display_data", data={"text/html": f'<div class="hm-book-widget">{body}</div>'}
                )
            )
            run.clear()
            noted = True

    for piece in _pieces(view["model_id"], models):
        if isinstance(piece, str):
            run.append(piece)
        else:
            flush()
            outputs.append(piece)
    flush()
    return outputs


def static_outputs(outputs: list, models: dict) -> list[nbformat.NotebookNode]:
    """A cell's outputs with every widget view and plotly bundle turned into HTML; the rest unchanged."""
    result: list[nbformat.NotebookNode] = []
    for output in outputs:
        data = output.get("data", {})
        if WIDGET_VIEW in data:
            result.extend(widget_outputs(data[WIDGET_VIEW], models))
        elif PLOTLY_MIME in data:
            figure = nbformat.v4.new_output(
                "display_data", data={"text/html": plotly_html(data[PLOTLY_MIME])}
            )
            result.append(figure)
        else:
            result.append(output)
    return result


def without_remote_images(markdown: str) -> str:
    """Markdown with each remote image replaced by its alt text (a badge inside a link stays a link)."""
    markdown = REMOTE_MARKDOWN_IMAGE.sub(lambda m: m.group(1), markdown)
    alt = re.compile(r"\balt=[\"']([^\"']*)[\"']", re.IGNORECASE)
    return REMOTE_HTML_IMAGE.sub(lambda m: a.group(1) if (a := alt.search(m.group(0))) else "", markdown)


def make_static(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Rewrite an executed notebook, in place, into one nbconvert renders as a static page that loads nothing remote
    and needs no widget manager; returns it."""
    models = notebook.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = static_outputs(cell.get("outputs", []), models)
        elif cell.cell_type == "markdown":
            cell.source = without_remote_images(cell.source)
    notebook.metadata.pop("widgets", None)
    return notebook
