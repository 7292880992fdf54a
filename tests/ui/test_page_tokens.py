"""The Access tokens page under AppTest: create (the token shown once), list with usage,
revoke; bad input stores nothing; non-admins see nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from db.session import Actor
from lib.runtime import build_runtime
from tests.support.apptest import page_test, rendered_text
from tests.support.keys import audit_rows

pytestmark = pytest.mark.one_server


@pytest.fixture(autouse=True)
def master_key_recorded(db):
    build_runtime(apply_migrations=False)


def page(actor: Actor) -> AppTest:
    return page_test("tokens", actor, timeout=60).run()


def create(at: AppTest, name: str, models: str = "", days: int = 0) -> AppTest:
    at.text_input(key="gk_token_name").input(name)
    at.text_input(key="gk_token_models").input(models)
    at.number_input(key="gk_token_expires").set_value(days)
    return at.button(key="FormSubmitter:gk_create_token-Create token").click().run()


def test_create_shows_the_token_once_then_list_and_revoke(db, admin_actor):
    at = create(page(admin_actor), "billing", "gemini-2.0-flash", 30)
    assert not at.exception
    [code] = at.code
    token = code.value
    assert token.startswith("gkat_")
    assert "shown only this once" in at.success[0].value
    with db.engine.connect() as connection:
        assert connection.execute(text("SELECT name, models FROM gemini_access_tokens")).one(
            ) == ("billing", ["gemini-2.0-flash"])
    assert len(audit_rows(db, "access_token_created")) == 1
    at.run()  # the next run: never again
    assert not at.code and token not in rendered_text(at)
    table = at.dataframe[0].value
    assert list(table["Name"]) == ["billing"] and list(table["State"]) == ["active"]
    assert list(table["Requests"]) == [0]
    at.selectbox(key="gk_revoke_choice").select(at.selectbox(key="gk_revoke_choice").options[0])
    at.button(key="FormSubmitter:gk_revoke_token-Revoke token").click().run()
    assert not at.exception
    assert "Revoked access token billing" in at.success[0].value
    assert list(at.dataframe[0].value["State"]) == ["revoked"]
    assert len(audit_rows(db, "access_token_revoked")) == 1


def test_usage_is_shown_per_token(db, admin_actor):
    at = create(page(admin_actor), "svc")
    with db.engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO gemini_access_token_usage (token_id, date, request_count, error_count,"
            " total_tokens, last_used_at) SELECT id, current_date, 7, 2, 120, now() "
            "FROM gemini_access_tokens"))
    at.run()
    row = at.dataframe[0].value.iloc[0]
    assert (row["Requests"], row["Errors"], row["Tokens"]) == (7, 2, 120)


def test_bad_input_is_one_message_and_nothing_stored(db, admin_actor):
    at = create(page(admin_actor), "ok", "not a model")
    assert "Not a model name" in at.error[0].value and not at.code
    with db.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM gemini_access_tokens")).scalar() == 0


def test_a_non_admin_sees_no_token(db, admin_actor, member_actor):
    create(page(admin_actor), "secret-service")
    at = page(member_actor)
    assert "secret-service" not in rendered_text(at)
    assert not at.dataframe
