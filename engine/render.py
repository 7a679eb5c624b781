"""Personalisation: campaign templates compiled once in a Jinja2 sandbox, rendered per recipient.

The sandbox refuses attribute tricks such as ``{{ ''.__class__ }}`` (they render as nothing);
HTML is autoescaped, so a contact's name can never inject markup. A variable the contact does
not have renders empty.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Jinja2 and the sandbox (``engine.sandbox``) are imported where a template is compiled
    from jinja2 import Template


def compile_html(source: str) -> Template:
    """An HTML template (autoescaped) compiled in the sandbox."""
    from engine.sandbox import HTML

    template = HTML.from_string(source)
    template._disparo_source = source  # type: ignore[attr-defined]  # for substitution()
    return template


def compile_text(source: str) -> Template:
    """A text template compiled in the sandbox."""
    from engine.sandbox import TEXT

    template = TEXT.from_string(source)
    template._disparo_source = source  # type: ignore[attr-defined]  # for substitution()
    return template


class Substitution:
    """A template made only of text and ``{{ name }}`` outputs, rendered by substituting the
    values (escaped in HTML) between its literal pieces: what Jinja2 renders for it, without
    the cost of a Jinja2 context per render (three renders per e-mail, the largest part of
    composing one). ``substitution`` makes one only when the output is the same."""

    def __init__(self, pieces: list[str], names: list[str], *, html: bool) -> None:
        self.pieces = pieces
        self.names = names
        self.html = html

    def render(self, values: Mapping[str, Any]) -> str:
        """The template rendered for ``values`` (a missing name renders empty)."""
        return self.fill(self.pieces, self.names, values)

    def fill(self, pieces: Sequence[str], names: Sequence[str], values: Mapping[str, Any]) -> str:
        """``pieces`` with ``values`` of ``names`` between them, as ``render`` fills this
        template's own (escaped in HTML; a missing name empty): also a run of its pieces
        (``channels.email.QpPart`` fills only the lines that hold a variable)."""
        out = [pieces[0]]
        if self.html:
            from markupsafe import escape

            for name, piece in zip(names, pieces[1:], strict=True):
                value = values.get(name, _MISSING)
                if value is not _MISSING:
                    # a plain str (the usual value) without a Markup object per value
                    out.append(html_escape(value) if type(value) is str else escape(value))
                out.append(piece)
            return "".join(out)
        for name, piece in zip(names, pieces[1:], strict=True):
            value = values.get(name, _MISSING)
            if value is not _MISSING:
                out.append(value if type(value) is str else str(value))
            out.append(piece)
        return "".join(out)


_MISSING = object()


def html_escape(s: str) -> str:
    """``s`` escaped for HTML as ``markupsafe.escape`` escapes a ``str`` (``&``, ``<``, ``>``,
    ``'`` and ``"``, the same entities), as a plain ``str``: no ``Markup`` object is made."""
    if "&" in s or "<" in s or ">" in s or "'" in s or '"' in s:
        return (
            s.replace("&", "&amp;")
            .replace(">", "&gt;")
            .replace("<", "&lt;")
            .replace("'", "&#39;")
            .replace('"', "&#34;")
        )
    return s


def substitution(template: Template) -> Substitution | Template:
    """``template`` as a ``Substitution`` when its source is only text and ``{{ name }}``
    (no filters, tests, statements or globals) and both render the same for values that
    need escaping; else ``template`` itself (rendered by Jinja2)."""
    from jinja2 import nodes

    environment = template.environment
    source = getattr(template, "_disparo_source", None)
    if source is None:
        return template
    try:
        tree = environment.parse(source)
    except Exception:
        return template
    pieces, names = [""], []
    for statement in tree.body:
        if not isinstance(statement, nodes.Output):
            return template
        for node in statement.nodes:
            if isinstance(node, nodes.TemplateData):
                pieces[-1] += node.data
            elif (
                isinstance(node, nodes.Name)
                and node.ctx == "load"
                and node.name not in environment.globals
            ):
                names.append(node.name)
                pieces.append("")
            else:
                return template
    fast = Substitution(pieces, names, html=bool(environment.autoescape))
    samples: list[dict[str, Any]] = [
        {n: f"<a href='x'>&\"{n}\"</a>" for n in names},
        {n: k if k % 2 else None for k, n in enumerate(names)},
        {},
    ]
    try:
        if any(fast.render(v) != template.render(v) for v in samples):
            return template
    except Exception:
        return template
    return fast


def variables(
    *,
    name: str | None,
    email: str | None,
    phone: str | None,
    external_key: str | None,
    fields: Mapping[str, Any] | None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What templates see for one recipient: the file's columns (``{{ cidade }}``) and the
    contact's name, e-mail, phone and key under their Portuguese and English names."""
    found: dict[str, Any] = dict(fields or {})
    found.update(
        nome=name or "",
        name=name or "",
        email=email or "",
        telefone=phone or "",
        phone=phone or "",
        cpf=external_key or "",
        codigo=external_key or "",
        id=external_key or "",
    )
    if extra:
        found.update(extra)
    return found


class _TextFromHtml(HTMLParser):
    """Enough of HTML to write a readable text part: paragraphs, line breaks, list items,
    headings, and links as ``text (url)``. Scripts and styles are dropped."""

    BLOCKS = frozenset(
        {
            "p",
            "div",
            "tr",
            "table",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "ul",
            "ol",
            "blockquote",
            "section",
            "article",
            "header",
            "footer",
        }
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.href: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "head", "title"):
            self.skip += 1
        elif tag == "br":
            self.out.append("\n")
        elif tag == "li":
            self.out.append("\n- ")
        elif tag in self.BLOCKS:
            self.out.append("\n\n")
        elif tag == "a":
            self.href.append(dict(attrs).get("href"))
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self.out.append(alt)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head", "title"):
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCKS:
            self.out.append("\n\n")
        elif tag == "a" and self.href:
            href = self.href.pop()
            if href and not href.startswith(("mailto:", "#")):
                self.out.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.out.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """A plain-text alternative of an HTML body (works on templates: ``{{ … }}`` is kept)."""
    parser = _TextFromHtml()
    parser.feed(html)
    parser.close()
    text = "".join(parser.out)
    lines = [line.strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def trial_render(template: Template, extra: Mapping[str, Any] | None = None) -> None:
    """Render once with made-up values: a template that reaches for what the sandbox forbids
    (``{{ ''.__class__ }}``…) fails here, once, instead of for every recipient. Raises
    ``jinja2.exceptions.SecurityError`` (or another Jinja2 error) with the reason."""
    sample = variables(
        name="Ana",
        email="ana@example.com",
        phone="+5511999999999",
        external_key="1",
        fields={},
        extra=extra,
    )
    template.render(sample)


# --------------------------------------------------------------------------------------------
# Tracking: links wrapped, an open pixel added (D17)

#: the variables a tracked body refers to; compose() fills them per recipient
OPEN_VARIABLE = "_disparo_open"
LINK_VARIABLE = "_disparo_link_{}"
_HREF = re.compile(r"""(\bhref\s*=\s*)(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+))""", re.IGNORECASE)
_TRACKABLE = re.compile(r"https?://", re.IGNORECASE)


class _Anchors(HTMLParser):
    """Where each ``<a …>`` start tag is in the source (absolute offsets)."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.line_starts = [0]
        for match in re.finditer("\n", source):
            self.line_starts.append(match.end())
        self.tags: list[tuple[int, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        text = self.get_starttag_text()
        if tag == "a" and text:
            line, column = self.getpos()
            self.tags.append((self.line_starts[line - 1] + column, text))


def track_links(html: str, *, clicks: bool, opens: bool) -> tuple[str, list[str]]:
    """Rewrite an HTML template for tracking: each ``http(s)://`` link becomes
    ``{{ _disparo_link_N }}`` (N from 1, in document order) and an open pixel
    ``{{ _disparo_open }}`` goes before ``</body>``. Returns the new template and the links'
    original URLs (HTML entities decoded; a URL may itself be a template, ``{{ cpf }}``…).

    ``mailto:``, ``tel:``, anchors and template-made links such as ``{{ unsubscribe_url }}``
    are left alone, as is any ``<a>`` with a ``data-notrack`` attribute.
    """
    import html as html_module

    urls: list[str] = []
    out = html
    if clicks:
        parser = _Anchors(html)
        parser.feed(html)
        parser.close()
        pieces: list[str] = []
        last = 0
        for offset, tag in parser.tags:
            if html[offset : offset + len(tag)] != tag or "data-notrack" in tag.lower():
                continue
            match = _HREF.search(tag)
            if match is None:
                continue
            raw = next(g for g in match.groups()[1:] if g is not None)
            url = html_module.unescape(raw.strip())
            if not _TRACKABLE.match(url) or url.count("{{") != url.count("}}"):
                continue
            urls.append(url)
            variable = "{{ " + LINK_VARIABLE.format(len(urls)) + " }}"
            start, end = offset + match.start(), offset + match.end()
            pieces += [html[last:start], f'{match.group(1)}"{variable}"']
            last = end
        pieces.append(html[last:])
        out = "".join(pieces)
    if opens:
        pixel = (
            '<img src="{{ ' + OPEN_VARIABLE + ' }}" width="1" height="1" alt="" '
            'style="display:block;border:0;width:1px;height:1px">'
        )
        at = out.lower().rfind("</body>")
        out = out[:at] + pixel + out[at:] if at >= 0 else out + pixel
    return out, urls
