"""Shared fixtures: the offline tokenizer and the records, loaded once per test session."""

import pytest

from helpers import load_records, load_tokenizer


@pytest.fixture(scope="session")
def tokenizer():
    return load_tokenizer()


@pytest.fixture
def fresh_tokenizer():
    """A tokenizer a test may change (add tokens to) without touching the shared one."""
    return load_tokenizer()


@pytest.fixture(scope="session")
def records():
    return load_records()
