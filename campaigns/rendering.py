"""Campaign email templates, compiled once and personalised per recipient the way SendGrid does it.

A step's subject, HTML body and text body are Jinja templates restricted to ``{{ field }}`` outputs
of the merge fields below. ``compile_template`` checks them when a marketer saves the step and makes
an HTML skeleton and a text skeleton (each with the footer: program name, postal address,
unsubscribe link) that hold a token wherever a merge field goes: ``[[lz:h:first_name]]`` in HTML,
``[[lz:t:first_name]]`` in text. One SendGrid request carries those skeletons for up to 1,000
recipients; each recipient gets its own rendered subject and a ``substitutions`` dict (HTML-escaped
values for HTML tokens, raw values for text tokens). ``render`` applies the same substitutions, so
the outbox and the preview show exactly what the provider will send.

Every merge field has a fallback, so no email says "Dear Dr. ,". Values are cut to lengths that
keep one recipient's substitutions under SendGrid's 10,000 bytes, and never contain the token marker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from html.parser import HTMLParser
from typing import Literal, NamedTuple

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, nodes
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import escape

from campaigns.delivery import apply_substitutions
from crm.errors import FieldError
from crm.names import display_case
from crm.text import plain_text, single_line

MAX_SUBJECT_CHARS = 300
MAX_VALUE_CHARS = 80
MAX_EMAIL_CHARS = 100
MAX_URL_CHARS = 300
MAX_SUBSTITUTION_BYTES = 10_000  # SendGrid's limit for the substitutions of one personalization


class MergeField(NamedTuple):
    """A merge field as the editor lists it; ``fallback`` is what readers see when the value is
    missing."""

    label: str
    fallback: str
    example: str


MERGE_FIELDS: dict[str, MergeField] = {
    "first_name": MergeField("First name", "Colleague", "Siobhán"),
    "last_name": MergeField("Last name", "Colleague", "O'Brien-Lee"),
    "clinician_name": MergeField("Full name with credential", "Colleague", "Siobhán O'Brien-Lee, MD"),
    "salutation": MergeField("Salutation (Dr. and last name for physicians, else full name)", "Colleague",
                             "Dr. O'Brien-Lee"),
    "practice_name": MergeField("Practice", "your practice", "Smith & Jones Family Practice"),
    "owner_name": MergeField("Liaison's name", "the outreach team", "Jordan Avery"),
    "owner_email": MergeField("Liaison's email", "the program's reply address", "jordan.avery@example.org"),
    "service_line": MergeField("Service line", "cancer care", "thoracic oncology"),
    "program_name": MergeField("Program", "our oncology program", "Riverside Cancer Institute"),
    "campaign_name": MergeField("Campaign", "our clinician updates", "Lung screening referrals"),
    "unsubscribe_url": MergeField("Unsubscribe link", "a mailto: link to the program's reply address",
                                  "https://liaison.example.org/unsubscribe/sample"),
}

_EXAMPLE_CREDENTIAL = "MD"
_EXAMPLE_REPLY_TO = "outreach@example.org"
_PHYSICIAN_DEGREES = frozenset({"MD", "DO", "MBBS", "MBCHB", "MBBCH", "BMBS", "MDCM"})
_TOKEN_MARKER = re.compile(r"\[+\[lz:", re.IGNORECASE)  # "[[lz:" however many brackets open it

TokenKind = Literal["html", "text"]


def token(name: str, kind: TokenKind) -> str:
    """The substitution token of a merge field: ``[[lz:h:first_name]]`` in HTML and
    ``[[lz:t:first_name]]`` in text (brackets on both sides: no token is part of another)."""
    return f"[[lz:{kind[0]}:{name}]]"


_TOKENS: dict[TokenKind, dict[str, str]] = {
    kind: {name: token(name, kind) for name in MERGE_FIELDS} for kind in ("html", "text")
}


# ------------------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True)
class MergeValues:
    """One recipient's value for every merge field, fallbacks applied; made by ``merge_values``."""

    first_name: str
    last_name: str
    clinician_name: str
    salutation: str
    practice_name: str
    owner_name: str
    owner_email: str
    service_line: str
    program_name: str
    campaign_name: str
    unsubscribe_url: str


def merge_values(
    *, first_name: str = "", last_name: str = "", middle_name: str = "", credential: str = "",
    practice_name: str = "", owner_name: str = "", owner_email: str = "", service_line: str = "",
    program_name: str, campaign_name: str, unsubscribe_url: str, reply_to: str,
) -> MergeValues:
    """A recipient's merge values: names as people write them, blank values replaced by their
    fallback, everything on one line and cut to size. ``reply_to`` (the program's reply address) is
    the fallback of ``owner_email`` and of ``unsubscribe_url`` (as a mailto: link).

    Raises ValueError for a missing or oversized reply address or an oversized unsubscribe URL."""
    reply_to = _clean(reply_to)
    if not reply_to or len(reply_to) > MAX_EMAIL_CHARS:
        raise ValueError(f"reply_to must be an email address of at most {MAX_EMAIL_CHARS} characters")
    unsubscribe_url = _clean(unsubscribe_url) or f"mailto:{reply_to}?subject=Unsubscribe"
    if len(unsubscribe_url) > MAX_URL_CHARS:
        raise ValueError(f"unsubscribe_url is longer than {MAX_URL_CHARS} characters")
    owner_email = _clean(owner_email)
    if not owner_email or len(owner_email) > MAX_EMAIL_CHARS:
        owner_email = reply_to

    first, middle, last = (display_case(_clean(part)) for part in (first_name, middle_name, last_name))
    credential = _clean(credential)
    full_name = " ".join(part for part in (first, last) if part)
    initial = f"{middle[0].upper()}." if middle[:1].isalpha() else ""
    formal_name = " ".join(part for part in (first, initial, last) if part) if full_name else ""
    text = {
        "first_name": first,
        "last_name": last,
        "clinician_name": f"{formal_name}, {credential}" if formal_name and credential else formal_name,
        "salutation": f"Dr. {last}" if last and _is_physician(credential) else full_name,
        "practice_name": _clean(practice_name),
        "owner_name": _clean(owner_name),
        "service_line": _clean(service_line),
        "program_name": _clean(program_name),
        "campaign_name": _clean(campaign_name),
    }
    fitted = {name: _clip(value, MAX_VALUE_CHARS) or MERGE_FIELDS[name].fallback for name, value in text.items()}
    return MergeValues(**fitted, owner_email=owner_email, unsubscribe_url=unsubscribe_url)


def sample_values(
    *, program_name: str = "", campaign_name: str = "", service_line: str = "", reply_to: str = ""
) -> MergeValues:
    """Values for a preview without a clinician: the examples of ``MERGE_FIELDS``, with the
    campaign's own program, campaign name, service line and reply address where given."""

    def example(name: str) -> str:
        return MERGE_FIELDS[name].example

    return merge_values(
        first_name=example("first_name"), last_name=example("last_name"), credential=_EXAMPLE_CREDENTIAL,
        practice_name=example("practice_name"), owner_name=example("owner_name"),
        owner_email=example("owner_email"), service_line=service_line or example("service_line"),
        program_name=program_name or example("program_name"),
        campaign_name=campaign_name or example("campaign_name"),
        unsubscribe_url=example("unsubscribe_url"), reply_to=reply_to or _EXAMPLE_REPLY_TO,
    )


def _clean(value: str) -> str:
    """``value`` on one line, with anything that could pass for a token defused."""
    return _TOKEN_MARKER.sub("[lz:", single_line(value))


def _clip(value: str, limit: int) -> str:
    """``value`` within ``limit`` characters: cut at a word when one is near, marked with '…'."""
    if len(value) <= limit:
        return value
    cut = value[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-") + "…"


def _is_physician(credential: str) -> bool:
    """Whether a credential such as "M.D., PhD" or "MBBS" holds a physician's degree."""
    degrees = re.split(r"[^A-Z]+", credential.upper().replace(".", ""))
    return not _PHYSICIAN_DEGREES.isdisjoint(degrees)


# ------------------------------------------------------------------------------------------------
# Templates


class TemplateError(FieldError):
    """A template refused at save time; ``field`` is "subject", "html_body" or "text_body" and the
    message starts with the line (1-based, within that field) when there is one."""

    def __init__(self, field: str, message: str, *, line: int | None = None) -> None:
        super().__init__(field, f"line {line}: {message}" if line else message)
        self.line = line


class Rendered(NamedTuple):
    subject: str
    html: str
    text: str


@dataclass(frozen=True)
class CompiledTemplate:
    """A checked template as skeletons holding tokens (see ``token``); ``subject_skeleton`` holds
    text tokens and is rendered per recipient by ``subject_for``."""

    subject_skeleton: str
    html_skeleton: str
    text_skeleton: str

    @cached_property
    def html_fields(self) -> frozenset[str]:
        return _fields_in(self.html_skeleton, "html")

    @cached_property
    def text_fields(self) -> frozenset[str]:
        return _fields_in(self.text_skeleton, "text")

    @cached_property
    def subject_fields(self) -> frozenset[str]:
        return _fields_in(self.subject_skeleton, "text")

    @cached_property
    def fields_used(self) -> frozenset[str]:
        return self.subject_fields | self.html_fields | self.text_fields

    def subject_for(self, values: MergeValues) -> str:
        """The recipient's subject: plain text on one line, at most ``MAX_SUBJECT_CHARS``."""
        raw = {token(name, "text"): getattr(values, name) for name in self.subject_fields}
        return _clip(single_line(apply_substitutions(self.subject_skeleton, raw)), MAX_SUBJECT_CHARS)

    def substitutions(self, values: MergeValues) -> dict[str, str]:
        """The recipient's value for each token the skeletons hold: HTML-escaped for HTML tokens,
        raw for text tokens. Raises ValueError beyond SendGrid's size limit (``merge_values`` keeps
        every recipient well within it)."""
        substitutions = {token(name, "html"): str(escape(getattr(values, name))) for name in self.html_fields}
        substitutions |= {token(name, "text"): getattr(values, name) for name in self.text_fields}
        size = sum(len(key.encode()) + len(value.encode()) for key, value in substitutions.items())
        if size >= MAX_SUBSTITUTION_BYTES:
            raise ValueError(f"substitutions take {size:,} bytes; SendGrid accepts under {MAX_SUBSTITUTION_BYTES:,}")
        return substitutions

    def render(self, values: MergeValues) -> Rendered:
        """The recipient's message exactly as the provider makes it from skeletons and substitutions."""
        substitutions = self.substitutions(values)
        return Rendered(
            self.subject_for(values),
            apply_substitutions(self.html_skeleton, substitutions),
            apply_substitutions(self.text_skeleton, substitutions),
        )


def compile_template(
    subject: str, html_body: str, text_body: str, *, postal_address: str, program_name: str
) -> CompiledTemplate:
    """Check a step's templates and compile them into skeletons with the footer. An empty body is
    made from the other one (plain text from the HTML, or simple paragraphs from the text). Raises
    TemplateError for the marketer's mistakes and ValueError for a missing program name or postal
    address (configuration)."""
    program, address = _footer_lines(program_name, postal_address)
    if not subject.strip():
        raise TemplateError("subject", "write a subject")
    if not html_body.strip() and not text_body.strip():
        raise TemplateError("html_body", "write the email's body")

    subject_template = _checked("subject", subject)
    html_template = _checked("html_body", html_body) if html_body.strip() else None
    text_template = _checked("text_body", text_body) if text_body.strip() else None
    if html_template:
        html = html_template.render(_TOKENS["html"])
    else:
        html = _html_from_text(text_template.render(_TOKENS["html"]))
    if text_template:
        text = text_template.render(_TOKENS["text"]).rstrip()
    else:
        text = _text_from_html(html_template.render(_TOKENS["text"]))
    return CompiledTemplate(
        subject_skeleton=subject_template.render(_TOKENS["text"]),
        html_skeleton=_with_html_footer(html, program, address),
        text_skeleton=text + _text_footer(program, address),
    )


# Tokens contain nothing that autoescaping changes, so one environment renders HTML and text alike.
_ENV = SandboxedEnvironment(autoescape=True, undefined=StrictUndefined, keep_trailing_newline=True)
_ONLY_FIELDS = "write just the merge field, like {{ first_name }}"


def _checked(field: str, source: str) -> Template:
    """``source`` compiled, once it is known to hold only text, comments and known merge fields."""
    try:
        tree = _ENV.parse(source)
        statement_lines = [line for line, kind, _ in _ENV.lex(source) if kind in ("block_begin", "raw_begin")]
    except TemplateSyntaxError as error:
        raise TemplateError(field, f"syntax error: {error.message}", line=error.lineno) from None
    except RecursionError:
        raise TemplateError(field, "the template is nested too deeply") from None
    if statement_lines:
        raise TemplateError(field, f"statements ({{% … %}}) are not allowed: {_ONLY_FIELDS}",
                            line=statement_lines[0])
    for output in tree.body:  # without statements, the body is only text and {{ }} outputs
        for node in output.nodes:
            if problem := _problem(node):
                raise TemplateError(field, problem[1], line=problem[0])
    # Comments vanish from the tree: text on both sides of one joins up, and must not make a token
    # ("[[{# #}lz:…" would otherwise put an unescaped value into the HTML).
    joined = "".join(
        node.data if isinstance(node, nodes.TemplateData) else "\x00"
        for output in tree.body for node in output.nodes
    )
    if marker := _TOKEN_MARKER.search(joined):
        raise TemplateError(field, "'[[lz:' is reserved for merge fields", line=joined.count("\n", 0, marker.start()) + 1)
    return _ENV.from_string(tree)


def _problem(node: nodes.Node) -> tuple[int, str] | None:
    """The line and the reason when ``node`` is more than text or a known merge field."""
    if isinstance(node, nodes.TemplateData):
        marker = _TOKEN_MARKER.search(node.data)
        if not marker:
            return None
        return node.lineno + node.data.count("\n", 0, marker.start()), "'[[lz:' is reserved for merge fields"
    if isinstance(node, nodes.Name):
        if node.name in MERGE_FIELDS:
            return None
        return node.lineno, f"unknown merge field '{node.name}' (known: {', '.join(MERGE_FIELDS)})"
    if isinstance(node, nodes.Filter):
        return node.lineno, f"filters ('|{node.name}') are not allowed: {_ONLY_FIELDS}"
    if isinstance(node, (nodes.Getattr, nodes.Getitem)):
        return node.lineno, f"attribute access is not allowed: {_ONLY_FIELDS}"
    if isinstance(node, nodes.Call):
        return node.lineno, f"calls are not allowed: {_ONLY_FIELDS}"
    return node.lineno, f"only a merge field name can go inside {{{{ }}}}: {_ONLY_FIELDS}"


def _fields_in(skeleton: str, kind: TokenKind) -> frozenset[str]:
    return frozenset(name for name, token_ in _TOKENS[kind].items() if token_ in skeleton)


# ------------------------------------------------------------------------------------------------
# Footer and plain text

_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def _footer_lines(program_name: str, postal_address: str) -> tuple[str, list[str]]:
    """The program's name and the lines of its postal address (without the name again)."""
    program = single_line(program_name)
    address = [line for line in (single_line(line) for line in plain_text(postal_address).splitlines()) if line]
    if address and address[0].casefold() == program.casefold():
        address = address[1:]
    if not program or not address:
        raise ValueError("every campaign email needs the program's name and postal address")
    if _TOKEN_MARKER.search("\n".join([program, *address])):
        raise ValueError("the program's name and postal address cannot hold '[[lz:'")
    return program, address


def _with_html_footer(html: str, program: str, address: list[str]) -> str:
    """``html`` with the footer before its last ``</body>``, or at the end."""
    footer = (
        '\n<div style="margin-top:32px;font-size:12px;color:#666666">\n'
        f"<p>{escape(program)}<br>{'<br>'.join(str(escape(line)) for line in address)}</p>\n"
        f"<p>Don't want these emails? <a href=\"{token('unsubscribe_url', 'html')}\">Unsubscribe</a>.</p>\n"
        "</div>\n"
    )
    ends = list(_BODY_END.finditer(html))
    at = ends[-1].start() if ends else len(html)
    return html[:at] + footer + html[at:]


def _text_footer(program: str, address: list[str]) -> str:
    unsubscribe = f"Don't want these emails? Unsubscribe: {token('unsubscribe_url', 'text')}"
    return "\n\n-- \n" + "\n".join([program, *address, unsubscribe]) + "\n"


def _html_from_text(text: str) -> str:
    """Plain text as HTML: escaped, a paragraph per blank-line-separated block, line breaks kept."""
    paragraphs = re.split(r"\n\s*\n", text.strip())
    return "\n".join(
        "<p>" + "<br>\n".join(str(escape(line)) for line in paragraph.splitlines()) + "</p>" for paragraph in paragraphs
    ) + "\n"


def _text_from_html(html: str) -> str:
    """A readable plain-text version of an email's HTML."""
    parser = _PlainText()
    parser.feed(html)
    parser.close()
    return parser.text()


class _PlainText(HTMLParser):
    """Collects an HTML document's text: paragraphs and line breaks kept, list items bulleted, link
    targets written after their label, head, scripts and styles left out."""

    _BLOCKS = frozenset({"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table", "tr",
                         "blockquote", "section", "article", "header", "footer", "hr", "pre"})
    _HIDDEN = frozenset({"head", "title", "script", "style"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._parts: list[str] = []
        self._hidden = 0
        self._links: list[tuple[str, int]] = []  # (href, where its label starts in _parts)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self._hidden += 1
        elif tag == "br":
            self._parts.append("\n")
        elif tag == "li":
            self._parts.append("\n- ")
        elif tag in ("td", "th"):
            self._parts.append(" ")
        elif tag in self._BLOCKS:
            self._parts.append("\n\n")
        elif tag == "a":
            self._links.append((dict(attrs).get("href") or "", len(self._parts)))
        elif tag == "img" and (alt := dict(attrs).get("alt")):
            self._parts.append(alt)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self._BLOCKS:
            self._parts.append("\n\n")
        elif tag == "a" and self._links:
            href, start = self._links.pop()
            label = "".join(self._parts[start:]).strip()
            if href and not href.startswith("#") and href.removeprefix("mailto:") != label:
                self._parts.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self._parts.append(re.sub(r"\s+", " ", data))

    def text(self) -> str:
        lines = (line.strip() for line in "".join(self._parts).split("\n"))
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
