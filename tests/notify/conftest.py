"""Fixtures for the webhook tests: a real local receiver, and notifiers pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from lib.notify import delivery
from lib.settings import Settings
from tests.support.webhook_receiver import FAST, WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as server:
        yield server
        delivery.shutdown(timeout=5)  # a notifier left configured must not outlive its test


@pytest.fixture
def webhooks(receiver, monkeypatch) -> WebhookReceiver:
    """Webhooks ON for every process the test starts (build_runtime, the CLI, the app)."""
    monkeypatch.setenv("GEMINI_KEYS_WEBHOOK_URLS", receiver.url)
    for name, value in FAST.items():
        monkeypatch.setenv(name, value)
    return receiver


@pytest.fixture
def make_notifier(receiver) -> Iterator[Callable[..., delivery.Notifier]]:
    """A Notifier of its own (not the process's), closed after the test."""
    made: list[delivery.Notifier] = []

    def make(engine=None, **overrides) -> delivery.Notifier:
        settings = Settings.load({"GEMINI_KEYS_WEBHOOK_URLS": receiver.url, **FAST})
        config = replace(delivery.WebhookConfig.from_settings(settings), **overrides)
        notifier = delivery.Notifier(config, engine)
        made.append(notifier)
        return notifier

    yield make
    for notifier in made:
        notifier.close(timeout=5)
