"""The book's page template and the files every page loads, all from installed packages: nothing remote.

Why a template of our own: nbconvert's lab template loads require.js, MathJax, the widget manager and mermaid from
CDNs. This one extends it, drops those, and loads instead plotly.js (the plotly package's own bundle), MathJax 2
(the `jupyter-server-mathjax` wheel, drawing native MathML so that no web font is needed) and the book's CSS, all
copied under the book's `assets/`, so a page opens from file:// or any static server with no network.
"""

from __future__ import annotations

import shutil
from pathlib import Path

TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_js_mathjax -%}
<script type="text/x-mathjax-config">
// MathJax's MathML output declares six web fonts (TeX's calligraphic, AMS, script, fraktur) that its wheel does not
// ship: each looks for an installed copy instead, and the browser's own fonts draw the rest
var localFonts = {};
for (var i = 1; i <= 6; i++) localFonts["@font-face /*" + i + "*/"] = {src: "local('MathJax_Main')"};
MathJax.Hub.Config({
  NativeMML: {styles: localFonts},
  messageStyle: "none",
  tex2jax: {inlineMath: [["$", "$"], ["\\\\(", "\\\\)"]], displayMath: [["$$", "$$"], ["\\\\[", "\\\\]"]],
            processEscapes: true, processEnvironments: true},
  menuSettings: {zoom: "None", renderer: "NativeMML"},  // the browser draws MathML: no web fonts to fetch
  "HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null}
});
</script>
<script src="assets/mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"></script>
<script src="assets/letters.js"></script>
<script src="assets/plotly.min.js"></script>
<link rel="stylesheet" href="assets/book.css">
{%- endblock html_head_js_mathjax -%}
{%- block body_header -%}
{{ super() }}
<nav class="hm-book-nav">{{ resources.book.nav }}</nav>
<p class="hm-book-banner hm-book-{{ resources.book.kind }}">{{ resources.book.label }}</p>
{%- endblock body_header -%}
"""

# The browser's MathML draws \\mathbb{E} and \\mathcal{D} as plain letters (MathML Core keeps no mathvariant): once
# MathJax is done, those letters become their Unicode double-struck and script forms, which any math font has
LETTERS_JS = r"""
MathJax.Hub.Register.StartupHook("End", function () {
  var holes = {
    "double-struck": {C: 0x2102, H: 0x210D, N: 0x2115, P: 0x2119, Q: 0x211A, R: 0x211D, Z: 0x2124},
    "script": {B: 0x212C, E: 0x2130, F: 0x2131, H: 0x210B, I: 0x2110, L: 0x2112, M: 0x2133, R: 0x211B}
  };
  var starts = {"double-struck": [0x1D538, 0x1D552, 0x1D7D8], "script": [0x1D49C, 0x1D4B6, null]};
  function letter(variant, c) {
    if (holes[variant][c]) return String.fromCodePoint(holes[variant][c]);
    var code = c.charCodeAt(0), start = starts[variant];
    if (c >= "A" && c <= "Z") return String.fromCodePoint(start[0] + code - 65);
    if (c >= "a" && c <= "z") return String.fromCodePoint(start[1] + code - 97);
    if (c >= "0" && c <= "9" && start[2]) return String.fromCodePoint(start[2] + code - 48);
    return c;
  }
  document.querySelectorAll('math [mathvariant="double-struck"], math [mathvariant="script"]').forEach(function (e) {
    var variant = e.getAttribute("mathvariant");
    if (e.children.length) return;
    e.textContent = Array.from(e.textContent).map(function (c) { return letter(variant, c); }).join("");
    e.removeAttribute("mathvariant");
  });
});
"""

CSS = """
.hm-book-nav { margin: 1em 0; font-family: var(--jp-ui-font-family, sans-serif); }
.hm-book-nav a { margin-right: 1.5em; }
.hm-book-banner { padding: .6em 1em; border-left: 4px solid #888; background: #f4f4f4; }
.hm-book-fast { border-color: #d98b00; background: #fff6e0; }
.hm-book-unexecuted { border-color: #b00; background: #fdeeee; }
.hm-book-widget { border: 1px dashed #aaa; padding: .5em; margin: .3em 0; }
.hm-book-box { display: flex; flex-wrap: wrap; gap: .3em 1.2em; align-items: center; }
.hm-book-column { flex-direction: column; align-items: flex-start; }
.hm-book-note { color: #666; font-size: 90%; font-style: italic; }
.hm-book-front { max-width: 60em; margin: 2em auto; font-family: sans-serif; line-height: 1.5; }
.hm-book-front li { margin-bottom: 1em; }
"""


def copy_assets(assets: Path) -> None:
    """plotly.js from the plotly package; MathJax 2 from jupyter-server-mathjax (TeX in, HTML-CSS out with its
    STIX-Web fonts, the one output and font set that wheel ships)."""
    import plotly.offline

    try:
        import jupyter_server_mathjax
    except ImportError as e:
        raise SystemExit(
            "the book needs MathJax from jupyter-server-mathjax: pip install -r requirements-dev.txt"
        ) from e
    assets.mkdir(parents=True)
    (assets / "plotly.min.js").write_text(plotly.offline.get_plotlyjs(), encoding="utf-8")
    (assets / "book.css").write_text(CSS)
    (assets / "letters.js").write_text(LETTERS_JS)
    mathjax = Path(jupyter_server_mathjax.__file__).parent / "static"
    languages = {p.name for p in (mathjax / "localization").iterdir()} - {"en"}
    shutil.copytree(mathjax, assets / "mathjax", ignore=lambda d, names: [n for n in names if n in languages])
