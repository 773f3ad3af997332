"""In-memory checks of the access rules: who may see and change a video, what a PATCH may carry, the login
rate limiter, and that token services never print their keys."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from api.access import can_view, is_gone, owns
from api.errors import InvalidRequest
from api.state import SlidingWindow
from api.tokens import Principal, TokenService
from api.validation import parse_edit_body
from common.settings import AuthSettings

ALICE = Principal("alice", "alice-main", frozenset({"viewer", "creator"}))
BOB = Principal("bob", None, frozenset({"viewer"}))
ADMIN = Principal("root", None, frozenset({"viewer", "admin"}))


def video(privacy: str, owner: str = "alice", status: str = "ready", deleted_at: object = None) -> SimpleNamespace:
    return SimpleNamespace(privacy=privacy, owner_id=owner, status=status, deleted_at=deleted_at)


@pytest.mark.parametrize(
    ("privacy", "viewers"),
    [("public", {None, BOB, ALICE, ADMIN}), ("unlisted", {None, BOB, ALICE, ADMIN}), ("private", {ALICE, ADMIN})],
)
def test_who_may_view(privacy: str, viewers: set[Principal | None]) -> None:
    for principal in (None, BOB, ALICE, ADMIN):
        assert can_view(video(privacy), principal) is (principal in viewers), (privacy, principal)


def test_only_the_owner_or_an_admin_owns() -> None:
    assert owns(video("public"), ALICE) and owns(video("public"), ADMIN)
    assert not owns(video("public"), BOB) and not owns(video("public"), None)
    assert not owns(video("public", owner="anonymous"), ALICE)


def test_deleted_by_status_or_tombstone() -> None:
    assert is_gone(None) and is_gone(video("public", status="deleted")) and is_gone(video("public", deleted_at=1))
    assert not is_gone(video("public"))


def test_admin_has_every_role() -> None:
    assert ADMIN.has_role("creator") and ALICE.has_role("creator") and not BOB.has_role("creator")


def test_a_patch_takes_only_editable_fields() -> None:
    body = {"title": " T ", "tags": ["a", "a", "b"], "privacy": "unlisted", "thumbnail_time": 2, "description": None}
    assert parse_edit_body(body) == {
        "title": "T",
        "tags": ["a", "b"],
        "privacy": "unlisted",
        "thumbnail_time_s": 2.0,
        "description": None,
    }


@pytest.mark.parametrize(
    ("body", "field", "problem"),
    [
        ({"owner_id": "bob"}, "owner_id", "is read-only"),
        ({"status": "ready"}, "status", "is read-only"),
        ({"title": "ok", "created_at": "2020"}, "created_at", "is read-only"),
        ({"size_bytes": 1}, "size_bytes", "is fixed by the upload and cannot be changed"),
        ({"roles": ["admin"]}, "roles", "is not a known field"),
        ({"title": None}, "title", "is required"),
        ({"privacy": "hidden"}, "privacy", "must be one of public, unlisted, private"),
    ],
)
def test_a_patch_of_anything_else_is_refused(body: dict[str, object], field: str, problem: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_edit_body(body)
    assert refused.value.detail[field] == problem


def test_an_empty_patch_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="nothing to change"):
        parse_edit_body({})


def test_the_sliding_window_limits_and_forgets() -> None:
    window = SlidingWindow(limit=3, window_s=60)
    for _ in range(3):
        assert window.retry_after("k") is None
        window.add("k")
    wait = window.retry_after("k")
    assert wait is not None and 0 < wait <= 61
    assert window.retry_after("other") is None
    window.clear("k")
    assert window.retry_after("k") is None


def test_token_services_and_settings_never_show_the_secret() -> None:
    settings = AuthSettings(jwt_secret="s" * 40)
    assert "s" * 40 not in repr(settings)
    service = TokenService(settings, b"s" * 40)
    assert "sss" not in repr(service)
