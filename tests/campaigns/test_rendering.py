"""Campaign templates: checked at save time, compiled into skeletons with substitution tokens, and
rendered per recipient exactly as SendGrid will (escaping once, fallbacks everywhere, size limits)."""

from __future__ import annotations

import dataclasses
import re

import pytest

from campaigns.delivery import apply_substitutions
from campaigns.rendering import (
    MAX_SUBJECT_CHARS,
    MAX_SUBSTITUTION_BYTES,
    MAX_VALUE_CHARS,
    MERGE_FIELDS,
    MergeValues,
    TemplateError,
    compile_template,
    merge_values,
    sample_values,
    token,
)
from crm.errors import FieldError

PROGRAM = "Riverside Cancer Institute"
POSTAL = "Riverside Cancer Institute\n1200 East Broad St, Suite 5\nRichmond, VA 23219"
UNSUBSCRIBE = "https://liaison.example.org/u/abc?send=1&sig=2"
EVERY_FIELD = " ".join(f"{{{{ {name} }}}}" for name in MERGE_FIELDS)


def compiled(subject="Hello {{ first_name }}", html="<p>Dear {{ salutation }},</p>", text="", **footer):
    footer = {"postal_address": POSTAL, "program_name": PROGRAM} | footer
    return compile_template(subject, html, text, **footer)


def values(**overrides) -> MergeValues:
    given = dict(
        first_name="Siobhán", last_name="O'Brien-Lee", credential="MD", practice_name="Smith & Jones Family Practice",
        owner_name="Jordan Avery", owner_email="jordan.avery@example.org", service_line="Thoracic oncology",
        program_name=PROGRAM, campaign_name="Lung screening referrals", unsubscribe_url=UNSUBSCRIBE,
        reply_to="outreach@example.org",
    )
    return merge_values(**given | overrides)


def empty_values() -> MergeValues:
    return merge_values(program_name=PROGRAM, campaign_name="Spring update", unsubscribe_url=UNSUBSCRIBE,
                        reply_to="outreach@example.org")


def substitution_bytes(substitutions: dict[str, str]) -> int:
    return sum(len(key.encode()) + len(value.encode()) for key, value in substitutions.items())


# ------------------------------------------------------------------------------------------------
# Merge fields and values


def test_every_merge_field_has_a_label_a_fallback_and_an_example():
    for name, field in MERGE_FIELDS.items():
        assert field.label.strip() and field.fallback.strip() and field.example.strip(), name
    assert [f.name for f in dataclasses.fields(MergeValues)] == list(MERGE_FIELDS)
    assert "credential" not in MERGE_FIELDS  # it lives inside clinician_name (and decides the salutation)


def test_names_are_displayed_as_people_write_them():
    merged = values(first_name="SIOBHÁN", middle_name="marie", last_name="O'BRIEN-LEE", credential="M.D., PhD")
    assert merged.first_name == "Siobhán" and merged.last_name == "O'Brien-Lee"
    assert merged.clinician_name == "Siobhán M. O'Brien-Lee, M.D., PhD"
    assert merged.salutation == "Dr. O'Brien-Lee"


@pytest.mark.parametrize("credential", ["MD", "M.D.", "md", "DO", "D.O.", "MBBS", "MBChB", "MD, PhD", "MD/MPH"])
def test_physicians_are_greeted_as_doctor(credential):
    merged = values(first_name="Jane", last_name="Smith", credential=credential)
    assert merged.salutation == "Dr. Smith"
    assert merged.clinician_name == f"Jane Smith, {credential}"


@pytest.mark.parametrize("credential", ["NP", "PA-C", "RN", "PhD", "DNP", ""])
def test_others_are_greeted_by_their_full_name(credential):
    merged = values(first_name="Jane", last_name="Smith", credential=credential)
    assert merged.salutation == "Jane Smith"
    assert merged.clinician_name == (f"Jane Smith, {credential}" if credential else "Jane Smith")


def test_a_physician_without_a_last_name_is_not_dr_blank():
    merged = values(first_name="Jane", last_name="  ", credential="MD")
    assert merged.salutation == "Jane" and merged.last_name == "Colleague"


def test_missing_and_blank_values_take_the_fallbacks():
    merged = merge_values(
        first_name=" ", last_name="", middle_name="Q", credential="MD", practice_name="\t", owner_name="",
        owner_email=" ", service_line="", program_name=" ", campaign_name="", unsubscribe_url=UNSUBSCRIBE,
        reply_to="outreach@example.org",
    )
    for name in ("first_name", "last_name", "clinician_name", "salutation", "practice_name", "owner_name",
                 "service_line", "program_name", "campaign_name"):
        assert getattr(merged, name) == MERGE_FIELDS[name].fallback, name
    assert merged.owner_email == "outreach@example.org"
    assert merged.unsubscribe_url == UNSUBSCRIBE


def test_a_missing_unsubscribe_url_falls_back_to_a_mailto_link():
    assert values(unsubscribe_url=" ").unsubscribe_url == "mailto:outreach@example.org?subject=Unsubscribe"


@pytest.mark.parametrize("overrides", [{"reply_to": " "}, {"reply_to": "x" * 200 + "@example.org"},
                                       {"unsubscribe_url": "https://example.org/" + "u" * 400}])
def test_values_without_which_no_email_can_go_are_refused(overrides):
    with pytest.raises(ValueError):
        values(**overrides)


def test_values_are_single_lines_without_control_characters():
    merged = values(practice_name="Smith\n& Jones\x00  Practice")
    assert merged.practice_name == "Smith & Jones Practice"


def test_sample_values_show_the_examples_and_the_campaign_s_own_names():
    sample = sample_values()
    for name, field in MERGE_FIELDS.items():
        assert getattr(sample, name) == field.example, name
    assert sample_values(campaign_name="Spring update").campaign_name == "Spring update"


# ------------------------------------------------------------------------------------------------
# Checking templates at save time


KNOWN = ", ".join(MERGE_FIELDS)


@pytest.mark.parametrize(
    "source, message",
    [
        ("Hello\n\nHi {{ frist_name }},", f"line 3: unknown merge field 'frist_name' (known: {KNOWN})"),
        ("{{ credential }}", "line 1: unknown merge field 'credential'"),
        ("a\n{% if first_name %}Hi{% endif %}", "line 2: statements"),
        ("a\n{% raw %}{{ first_name }}{% endraw %}", "line 2: statements"),
        ("a\nb\n{{ first_name|upper }}", "line 3: filters"),
        ("{{ first_name.upper }}", "line 1: attribute access"),
        ("{{ first_name['x'] }}", "line 1: attribute access"),
        ("{{ first_name() }}", "line 1: calls"),
        ("{{ 1 + 2 }}", "line 1: only a merge field name"),
        ("{{ 'Siobhán' }}", "line 1: only a merge field name"),
        ("{{ first_name ~ last_name }}", "line 1: only a merge field name"),
        ("ok\n{{ first_name }", "line 2: syntax error:"),
        ("{{ }}", "line 1: syntax error:"),
        ("see\n[[lz:h:first_name]]", "line 2: '[[lz:' is reserved"),
    ],
)
@pytest.mark.parametrize("field", ["subject", "html_body", "text_body"])
def test_anything_but_known_merge_fields_is_refused_with_its_line(field, source, message):
    parts = {"subject": "Hi", "html_body": "<p>Hi</p>", "text_body": "Hi"} | {field: source}
    with pytest.raises(TemplateError) as error:
        compile_template(parts["subject"], parts["html_body"], parts["text_body"], postal_address=POSTAL,
                         program_name=PROGRAM)
    assert isinstance(error.value, FieldError)
    assert error.value.field == field
    assert error.value.message.startswith(message)


def test_whitespace_inside_braces_and_comments_are_fine():
    template = compiled(html="<p>{{first_name}} {{   last_name   }}{# a note for colleagues #}</p>")
    assert template.render(values()).html.startswith("<p>Siobhán O&#39;Brien-Lee</p>")


def test_an_email_needs_a_subject_a_body_and_a_postal_address():
    with pytest.raises(TemplateError) as error:
        compiled(subject="  ")
    assert error.value.field == "subject"
    with pytest.raises(TemplateError) as error:
        compiled(html="\n", text=" ")
    assert error.value.field == "html_body"
    with pytest.raises(ValueError):
        compiled(postal_address=" \n ")
    with pytest.raises(ValueError):
        compiled(program_name="")


# ------------------------------------------------------------------------------------------------
# Skeletons and tokens


def test_tokens_are_unique_and_never_part_of_one_another():
    tokens = [token(name, kind) for name in MERGE_FIELDS for kind in ("html", "text")]
    assert token("first_name", "html") == "[[lz:h:first_name]]"
    assert token("first_name", "text") == "[[lz:t:first_name]]"
    assert len(set(tokens)) == len(tokens)
    for one in tokens:
        assert not any(one in other for other in tokens if other != one)


def test_skeletons_hold_tokens_and_the_values_arrive_as_substitutions():
    template = compiled(html="<p>Hi {{ first_name }}</p>", text="Hi {{ first_name }} at {{ practice_name }}")
    assert "[[lz:h:first_name]]" in template.html_skeleton and "Siobhán" not in template.html_skeleton
    assert "[[lz:t:practice_name]]" in template.text_skeleton
    assert template.fields_used == {"first_name", "practice_name", "unsubscribe_url"}
    assert template.substitutions(values()) == {
        "[[lz:h:first_name]]": "Siobhán",
        "[[lz:h:unsubscribe_url]]": "https://liaison.example.org/u/abc?send=1&amp;sig=2",
        "[[lz:t:first_name]]": "Siobhán",
        "[[lz:t:practice_name]]": "Smith & Jones Family Practice",
        "[[lz:t:unsubscribe_url]]": UNSUBSCRIBE,
    }


TEMPLATES = [
    ("Hello {{ first_name }}", "<p>Dear {{ salutation }},</p><p>{{ practice_name }}</p>",
     "Dear {{ salutation }},\n{{ practice_name }}"),
    (EVERY_FIELD, f"<html><body><p>{EVERY_FIELD}</p></body></html>", ""),
    ("Update", "<p>From {{ owner_name }} &lt;{{ owner_email }}&gt;</p>", f"{EVERY_FIELD}\n"),
    ("Text only", "", f"Dear {{{{ salutation }}}},\n\n{EVERY_FIELD}"),
]


@pytest.mark.parametrize("subject, html, text", TEMPLATES)
@pytest.mark.parametrize("merged", [values(), empty_values(), sample_values()], ids=["full", "empty", "sample"])
def test_render_is_exactly_what_the_provider_makes_of_skeleton_and_substitutions(subject, html, text, merged):
    template = compiled(subject, html, text)
    substitutions = template.substitutions(merged)
    rendered = template.render(merged)
    assert rendered.html == apply_substitutions(template.html_skeleton, substitutions)
    assert rendered.text == apply_substitutions(template.text_skeleton, substitutions)
    assert rendered.subject == template.subject_for(merged)
    for token_ in substitutions:
        assert token_ in template.html_skeleton or token_ in template.text_skeleton


@pytest.mark.parametrize("subject, html, text", TEMPLATES)
def test_empty_clinician_data_never_shows_a_gap_a_placeholder_or_a_token(subject, html, text):
    template = compiled("Hi {{ first_name }}, " + subject, "<p>Hi {{ first_name }},</p>" + html, text)
    rendered = template.render(empty_values())
    for part in rendered:
        assert "[[" not in part and "{{" not in part and "lz:" not in part
        assert not re.search(r"(Hi|Dear|Dr\.) ?,|, ,", part)
    assert rendered.subject.startswith("Hi Colleague, ")
    assert "<p>Hi Colleague,</p>" in rendered.html


# ------------------------------------------------------------------------------------------------
# Escaping exactly once


def test_names_arrive_intact_in_the_subject_and_the_text_and_escaped_once_in_html():
    template = compiled(
        subject="{{ salutation }} at {{ practice_name }}",
        html="<p>Dear {{ salutation }} ({{ clinician_name }}) at {{ practice_name }}</p>",
        text="Dear {{ salutation }} at {{ practice_name }}",
    )
    rendered = template.render(values(first_name="José", last_name="O'Brien-Muñoz"))
    assert rendered.subject == "Dr. O'Brien-Muñoz at Smith & Jones Family Practice"
    assert rendered.text.startswith("Dear Dr. O'Brien-Muñoz at Smith & Jones Family Practice")
    assert ("<p>Dear Dr. O&#39;Brien-Muñoz (José O&#39;Brien-Muñoz, MD) at Smith &amp; Jones Family Practice</p>"
            in rendered.html)
    assert "&amp;#39;" not in rendered.html and "&amp;amp;" not in rendered.html


def test_markup_in_a_value_is_escaped_in_html_and_plain_elsewhere():
    template = compiled(subject="{{ practice_name }}", html="<p>{{ practice_name }}</p>", text="{{ practice_name }}")
    rendered = template.render(values(practice_name="<script>alert('x')</script> & Co"))
    assert "<p>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; Co</p>" in rendered.html
    assert "<script>" not in rendered.html
    assert rendered.subject == "<script>alert('x')</script> & Co"
    assert rendered.text.startswith("<script>alert('x')</script> & Co")


def test_the_marketer_s_own_html_is_kept_as_written():
    html = '<p style="color:#333">Tumor board &amp; lunch &mdash; <b>Thursday</b></p>\n<!-- keep -->\n'
    template = compiled(html=html)
    assert template.html_skeleton.startswith(html)


def test_a_value_that_looks_like_a_token_is_not_expanded_again():
    template = compiled(subject="{{ first_name }}", html="<p>{{ first_name }} {{ owner_email }}</p>",
                        text="{{ first_name }} {{ owner_email }}")
    rendered = template.render(values(first_name="[[lz:h:owner_email]][[lz:t:owner_email]][[LZ:t:x]]"))
    for part in rendered:
        assert "[[lz:" not in part.lower()
        assert part.count("jordan.avery@example.org") <= 1


# ------------------------------------------------------------------------------------------------
# Subject


def test_the_subject_is_one_line():
    template = compiled(subject="Hello\n  {{ first_name }}\r\nand welcome")
    assert template.subject_for(values()) == "Hello Siobhán and welcome"


def test_a_long_subject_is_trimmed_at_a_word():
    template = compiled(subject="News for {{ practice_name }} " + "and more " * 40 + "{{ campaign_name }}")
    subject = template.subject_for(values(practice_name="Smith & Jones Family Practice " * 20))
    assert len(subject) <= MAX_SUBJECT_CHARS and subject.endswith("…")
    assert subject.startswith("News for Smith & Jones Family Practice ")
    assert not subject.endswith(" …")


# ------------------------------------------------------------------------------------------------
# Footer and plain text


def test_the_footer_is_always_there_with_program_address_and_unsubscribe():
    assert compiled().html_skeleton.count(PROGRAM) == 1  # the address starts with it: not shown twice
    template = compiled(html="<html><body><p>Hi</p></body></html>", text="Hi",
                        postal_address="Smith & Co <Mail Room>\n1 Main St\n\nRichmond, VA")
    html = template.html_skeleton
    assert PROGRAM in html and "Smith &amp; Co &lt;Mail Room&gt;<br>1 Main St<br>Richmond, VA" in html
    assert 'href="[[lz:h:unsubscribe_url]]"' in html
    assert html.index("[[lz:h:unsubscribe_url]]") < html.index("</body>")
    text = template.text_skeleton
    assert "Smith & Co <Mail Room>\n1 Main St\nRichmond, VA" in text and PROGRAM in text
    assert "[[lz:t:unsubscribe_url]]" in text
    rendered = template.render(values())
    assert "https://liaison.example.org/u/abc?send=1&amp;sig=2" in rendered.html
    assert UNSUBSCRIBE in rendered.text


def test_without_a_text_body_a_readable_one_is_made_from_the_html():
    html = (
        "<html><head><title>News</title><style>p { color: red; }</style></head><body>\n"
        "<h1>Lung screening</h1>\n<p>Dear {{ salutation }},<br>\n  welcome  to   {{ practice_name }}.</p>\n"
        '<p>Read <a href="https://example.org/guide?a=1&amp;b=2">our guide</a> or write to '
        '<a href="mailto:{{ owner_email }}">{{ owner_email }}</a>.</p>\n'
        "<ul><li>Fast &amp; simple</li><li>Free</li></ul><script>alert(1)</script></body></html>"
    )
    template = compiled(html=html, text="")
    assert "[[lz:t:salutation]]" in template.text_skeleton and "[[lz:h:" not in template.text_skeleton
    text = template.render(values()).text
    assert text.startswith(
        "Lung screening\n\nDear Dr. O'Brien-Lee,\nwelcome to Smith & Jones Family Practice.\n\n"
        "Read our guide (https://example.org/guide?a=1&b=2) or write to jordan.avery@example.org.\n\n"
        "- Fast & simple\n- Free\n\n"
    )
    assert "<" not in text.split("\n\n--")[0] and "color" not in text and "alert" not in text


def test_without_an_html_body_simple_html_is_made_from_the_text():
    template = compiled(html=" ", text="Dear {{ salutation }},\n\nSee {{ practice_name }} <here> & there.\nThanks\n")
    assert "[[lz:h:salutation]]" in template.html_skeleton and "[[lz:t:" not in template.html_skeleton
    html = template.render(values()).html
    assert html.startswith(
        "<p>Dear Dr. O&#39;Brien-Lee,</p>\n"
        "<p>See Smith &amp; Jones Family Practice &lt;here&gt; &amp; there.<br>\nThanks</p>\n"
    )
    assert 'href="https://liaison.example.org/u/abc?send=1&amp;sig=2"' in html


# ------------------------------------------------------------------------------------------------
# Provider limits


def test_a_very_long_value_is_trimmed_and_the_substitutions_stay_within_the_limit():
    template = compiled(subject=EVERY_FIELD, html=f"<p>{EVERY_FIELD}</p>", text=EVERY_FIELD)
    merged = values(practice_name="Memorial Oncology Associates " * 200)
    assert len(merged.practice_name) <= MAX_VALUE_CHARS and merged.practice_name.endswith("…")
    assert substitution_bytes(template.substitutions(merged)) < MAX_SUBSTITUTION_BYTES
    assert len(template.subject_for(merged)) <= MAX_SUBJECT_CHARS


def test_even_the_worst_values_stay_within_the_provider_s_limit():
    worst = "'&\U0001f600" * 500  # escapes to five bytes in HTML, four bytes of UTF-8
    template = compiled(subject="Hi", html=f"<p>{EVERY_FIELD}</p>", text=EVERY_FIELD)
    merged = merge_values(
        first_name=worst, last_name=worst, middle_name=worst, credential=worst, practice_name=worst,
        owner_name=worst, owner_email="o'&" * 32 + "@x", service_line=worst, program_name=worst,
        campaign_name=worst, unsubscribe_url="https://x.org/?" + "&" * 280, reply_to="r'&" * 32 + "@x",
    )
    assert substitution_bytes(template.substitutions(merged)) < MAX_SUBSTITUTION_BYTES


def test_values_made_without_merge_values_cannot_break_the_limit():
    template = compiled(html="<p>{{ practice_name }}</p>")
    oversized = dataclasses.replace(values(), practice_name="&" * 5000)
    with pytest.raises(ValueError, match="10,000"):
        template.substitutions(oversized)
