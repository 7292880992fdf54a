"""Hostile user text for the inert-text tests: Markdown links and images, emphasis, LaTeX,
colour directives, icons, HTML, bare URLs, as a key name, a group, an admin's email, Gemini's
error message and (through them) audit details. seed_hostile() puts them everywhere a page
shows user text."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import text

from db.session import Actor, session_scope
from lib.keys.writes import add_key
from lib.pool.health import check_keys
from lib.tokens import create_token
from lib.users.accounts import create_user
from tests.support.databases import TEST_BCRYPT_ROUNDS
from tests.support.keys import fake_key

HOSTILE_NAME = "[n](https://evil.example/n) ![i](https://evil.example/n.png) **b** $x$ <b>h</b>"
HOSTILE_GROUP = ":blue-background[g] <b>g</b> www.evil.example ~~s~~ `c` -> :smile:"
HOSTILE_EMAIL = "![e](https://evil.example/e.png)@example.com"
HOSTILE_MESSAGE = ("Key not valid. [Fix it](https://evil.example/m) $$x^2$$ :red[r] :material/key: "
                   "_i_")
HOSTILE_TEXTS = (HOSTILE_NAME, HOSTILE_GROUP, HOSTILE_EMAIL, HOSTILE_MESSAGE)
# What would become a link, an image, emphasis, maths, colour, an icon or HTML if rendered.
MARKUP = ("](https://evil", "![", "**b**", "$x$", "$$", ":red[", ":blue-background[", "<b>",
          "www.evil", "~~s~~", ":material/", "_i_", ":smile:", "`c`")
PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class Hostile:
    admin: Actor  # an admin whose email is HOSTILE_EMAIL
    key_id: uuid.UUID


def seed_hostile(engine, master, fake) -> Hostile:
    """An admin with a hostile email, a key with a hostile name and group that has traffic
    today, an access token of that name, and a check against `fake` (a FakeGemini) that
    answers with a hostile message: the key is disabled with that reason and the audit log
    holds all of it."""
    with session_scope(Actor.service("cli"), engine=engine) as session:
        user = create_user(session, email=HOSTILE_EMAIL, password=PASSWORD, admin=True,
                           bcrypt_rounds=TEST_BCRYPT_ROUNDS)
    admin = Actor.user(user.id, HOSTILE_EMAIL)
    api_key = fake_key()
    with session_scope(Actor.service("cli", user.id, HOSTILE_EMAIL), engine=engine) as session:
        key = add_key(session, master, name=HOSTILE_NAME, api_key=api_key,
                      group_label=HOSTILE_GROUP)
        session.execute(text(
            "INSERT INTO gemini_key_usage_stats (key_id, date, request_count, success_count,"
            " failure_count) VALUES (:k, current_date, 10, 6, 4)"), {"k": key.id})
        create_token(session, name=HOSTILE_NAME)  # the Access tokens page lists it
    fake.respond(api_key, "invalid", message=HOSTILE_MESSAGE)
    check_keys([key.id], master=master, actor=Actor.service("cli", user.id, HOSTILE_EMAIL),
               engine=engine, base_url=fake.base_url)
    return Hostile(admin, key.id)
