"""The analytics screen: outcomes per crew and per rule over 24 h / 7 d, which inboxes are open
now (in their own time zones), the modes in force and the newest shadow answers."""

from __future__ import annotations

from console.app import ConsoleApp
from console.screens.analytics import AnalyticsScreen
from state import open_database
from state.vocabulary import CONFIG_EFFECTIVE
from tests.console.conftest import build_app
from tests.console.helpers import screen_text, wait_for_screen, wait_for_text
from tests.console.seed import EFFECTIVE, HOSTILE, NOW

DAY = 86400.0
# NOW is Tuesday 2023-11-14 22:23 UTC: 19:23 in São Paulo (closed since 18:00), Wednesday 07:23
# in Tokyo (open since 07:00).
CONFIG = {**EFFECTIVE,
          "routing": {"mode": "auto", "rules": [{"crew": "vendas", "name": "wa", "shadow_crew": "trial"},
                                                {"crew": "suporte", "name": "fb", "mode": "draft"}]},
          "inboxes": {"1": {"business_hours": {"timezone": "America/Sao_Paulo", "weekly": {"tue": "08:00-18:00",
                                                                                            "wed": "08:00-18:00"},
                                               "after_hours": "handoff"}},
                      "2": {"mode": "draft", "business_hours": {"timezone": "Asia/Tokyo",
                                                                "weekly": {"wed": "07:00-19:00"}}}}}


def _outcomes(path: str) -> None:
    db = open_database(path)
    try:
        with db.transaction() as tx:
            def add(kind: str, conv: int, crew: str, rule: str, at: float, value: float | None = None,
                    detail: str = "") -> None:
                tx.outcomes.record(kind, account_id=1, conversation_id=conv, crew=crew, rule=rule, now=at,
                                   value=value, detail=detail)

            for n, latency in enumerate((1.0, 2.0, 3.0)):
                add("answered", 101, "vendas", "wa", NOW - 3600 + n, latency)
            add("resolved_by_bot", 101, "vendas", "wa", NOW - 3000)
            add("csat", 101, "vendas", "wa", NOW - 2900, 4.0, "message 77")
            add("handoff", 102, "suporte", "fb", NOW - 2000, detail="customer_request")
            add("draft", 104, "suporte", "fb", NOW - 1900)
            add("shadow", 101, "trial", "wa", NOW - 1800, detail=HOSTILE)
            add("answered", 103, "faq", "", NOW - 2 * DAY, 9.0)  # only in the 7-day window
            tx.documents.put(CONFIG_EFFECTIVE, CONFIG, NOW - 5)
    finally:
        db.close()


async def test_analytics_shows_outcomes_hours_modes_and_shadow_answers(db_path: str) -> None:
    _outcomes(db_path)
    app: ConsoleApp = build_app(db_path)
    async with app.run_test(size=(200, 80)) as pilot:
        await pilot.press("6")
        await wait_for_screen(pilot, lambda app: isinstance(app.screen, AnalyticsScreen), what="the analytics screen")
        text = await wait_for_text(pilot, "conversations served")
        assert "Last 24 hours: 3 conversations served · 3 answers · resolved by the bot 33%" in text
        assert "hand-off 33%" in text and "CSAT 4.0 (1)" in text and "drafts 1 · shadow 1" in text
        assert "customer_request 1" in text
        assert "faq" not in text.split("Per routing rule")[0]  # two days old: not in the last 24 hours
        assert "○ inbox 1 WhatsApp Vendas closed · opens tomorrow at 08:00 America/Sao_Paulo" in text
        assert "after hours: handoff" in text
        assert "● inbox 2 Facebook Page open · Wed 07:23 Asia/Tokyo · mode draft" in text
        assert "fb: draft" in text and "wa shadow: trial" in text and "inbox 2: draft" in text
        assert HOSTILE.split("\x1b")[0] in text  # customer-made text shown as is, never as markup

        await pilot.press("w")
        text = await wait_for_text(pilot, "Last 7 days")
        assert "Last 7 days: 4 conversations served · 4 answers" in text
        assert "faq" in text


async def test_analytics_without_data_says_so(app: ConsoleApp) -> None:
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.press("6")
        text = await wait_for_text(pilot, "conversations served")
        assert "0 conversations served" in text and "resolved by the bot -" in text
        assert "none configured: every inbox is served at any time" in text
        assert "every conversation in auto mode, no shadow crew" in text
        assert screen_text(app).count("6 Analytics") == 1
