"""What an admin may set as a budget: named groups, Gemini model ids, bounded limits."""

from __future__ import annotations

import pytest

from lib.errors import InvalidInput
from lib.quotas.rules import (
    LIMIT_MAX,
    Limits,
    normalise_model,
    validate_group_name,
    validate_limit,
    validate_limits,
)
from tests.support.keys import fake_key


@pytest.mark.parametrize("model, expected", [
    ("gemini-2.5-flash", "gemini-2.5-flash"),
    ("  gemini-2.5-pro ", "gemini-2.5-pro"),
    ("models/gemini-2.0-flash-lite-001", "gemini-2.0-flash-lite-001"),
    ("gemma-3-27b-it", "gemma-3-27b-it"),
    ("text_embedding.004", "text_embedding.004"),
])
def test_model_ids_are_normalised(model, expected):
    assert normalise_model(model) == expected


@pytest.mark.parametrize("model, message", [
    ("", "Name the model"),
    ("   ", "Name the model"),
    ("models/", "Name the model"),
    (None, "must be text"),
    (42, "must be text"),
    ("Gemini-2.5-Flash", "lower-case"),
    ("gemini 2.5 flash", "lower-case"),
    ("gemini/2.5", "lower-case"),
    ("-gemini", "lower-case"),
    ("gemini-", "lower-case"),
    ("gemini\u200b-pro", "lower-case"),
    ("gemini\x00", "lower-case"),
    ("g" * 129, "too long"),
])
def test_bad_model_ids_are_refused_with_one_message(model, message):
    with pytest.raises(InvalidInput, match=message):
        normalise_model(model)


def test_a_key_pasted_as_model_or_group_is_refused_without_echo():
    secret = fake_key()
    for check in (normalise_model, validate_group_name):
        with pytest.raises(InvalidInput) as error:
            check(secret)
        assert "API key" in str(error.value) and secret not in str(error.value)


@pytest.mark.parametrize("group, message", [
    ("", "Choose a group"), ("  ", "Choose a group"), (None, "must be text"),
    ("x" * 101, "too long"), ("proj\na", "control"), ("proj\u202ea", "invisible"),
])
def test_bad_groups_are_refused(group, message):
    with pytest.raises(InvalidInput, match=message):
        validate_group_name(group)


@pytest.mark.parametrize("value, expected", [
    (None, None), ("", None), ("  ", None), (0, 0), ("0", 0), (15, 15), (" 1,500 ", 1500),
    ("250_000", 250_000), (10.0, 10), (LIMIT_MAX["rpm"], LIMIT_MAX["rpm"]),
])
def test_limits_accept_whole_numbers_and_empty(value, expected):
    assert validate_limit("rpm", value) == expected


@pytest.mark.parametrize("name, value, message", [
    ("rpm", -1, "cannot be negative"),
    ("rpd", "-5", "cannot be negative"),
    ("rpm", "--5", "whole number"),
    ("tpm", "1e6", "whole number"),
    ("tpm", "ten", "whole number"),
    ("rpm", "１０", "whole number"),  # full-width digits
    ("rpm", 1.5, "whole number"),
    ("rpm", True, "not true/false"),
    ("rpm", [1], "whole number"),
    ("rpm", LIMIT_MAX["rpm"] + 1, "too large"),
    ("tpm", LIMIT_MAX["tpm"] + 1, "too large"),
    ("rpd", str(LIMIT_MAX["rpd"] + 1), "too large"),
    ("rpd", 2**31, "too large"),  # would not fit the INTEGER column
])
def test_bad_limits_are_refused(name, value, message):
    with pytest.raises(InvalidInput, match=message):
        validate_limit(name, value)


def test_at_least_one_limit_is_needed():
    with pytest.raises(InvalidInput, match="at least one"):
        validate_limits(rpm=None, tpm="", rpd=None)
    assert validate_limits(rpd=0) == Limits(None, None, 0)


def test_limits_describe_no_limit_and_no_quota():
    assert Limits(10, None, 0).describe() == "rpm 10, tpm no limit, rpd 0 (no quota)"
