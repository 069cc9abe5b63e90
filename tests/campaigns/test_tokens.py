"""Signed tokens for the public pages: one spelling, one purpose, one key."""

from __future__ import annotations

import pytest

from campaigns.tokens import TokenError, make_token, read_token


def test_a_token_reads_back_its_ids():
    token = make_token("key", "unsubscribe", 42)
    assert read_token("key", "unsubscribe", token) == (42,)
    assert read_token("key", "rsvp", make_token("key", "rsvp", 7, 9), count=2) == (7, 9)


@pytest.mark.parametrize("change", [
    lambda t: t + "!", lambda t: t[:5] + "!" + t[5:], lambda t: t + "==", lambda t: t[:-1],
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), lambda t: t.replace(t[0], "é", 1), lambda t: "",
    lambda t: t * 10, lambda t: t + " ",
])
def test_any_other_spelling_or_a_changed_character_is_refused(change):
    token = make_token("key", "unsubscribe", 42)
    with pytest.raises(TokenError):
        read_token("key", "unsubscribe", change(token))


def test_a_token_for_another_purpose_or_key_is_refused():
    token = make_token("key", "unsubscribe", 42)
    with pytest.raises(TokenError):
        read_token("key", "rsvp", token)
    with pytest.raises(TokenError):
        read_token("other key", "unsubscribe", token)
