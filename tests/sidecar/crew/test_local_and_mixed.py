"""Local crews (canned answers, hand-off keywords) and two back-ends in one run."""

from __future__ import annotations

from simulators import FakeChatwoot, FakeCrew
from simulators.fake_mcp import FakeMcp
from tests.conftest import SidecarFactory
from tests.sidecar.crew.conftest import crews, finished_job

FAQ = {
    "backend": "local",
    "answers": [
        {"keywords": ["horário", "hours"], "reply": "Atendemos das 8h às 18h."},
        {"keywords": ["preço", "price"], "reply": "A tabela de preços está em acme.example/precos."},
    ],
    "handoff_keywords": ["atendente", "human"],
    "handoff_message": "Certo, vou chamar um atendente.",
    "fallback_reply": "Não entendi; pode reformular?",
}


async def test_local_crew_answers_falls_back_and_hands_off(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew
) -> None:
    overrides = {"routing": {"default_crew": "faq", "rules": []}, **crews(faq=FAQ)}
    proc = await sidecar_factory(overrides)
    hours = chatwoot.open_conversation("webwidget")
    price = chatwoot.open_conversation("facebook")
    other = chatwoot.open_conversation("instagram")
    human = chatwoot.open_conversation("whatsapp")
    await chatwoot.customer_says(hours, "Qual o HORARIO de vocês?")  # case and accents ignored
    await chatwoot.customer_says(price, "e o preço??")
    await chatwoot.customer_says(other, "apreço muito")  # "preço" only inside a word: no match
    await chatwoot.customer_says(human, "Qual o preço? Quero falar com um atendente")

    await chatwoot.wait_for(lambda: chatwoot.replies(hours.display_id) == ["Atendemos das 8h às 18h."])
    await chatwoot.wait_for(
        lambda: chatwoot.replies(price.display_id) == ["A tabela de preços está em acme.example/precos."])
    await chatwoot.wait_for(lambda: chatwoot.replies(other.display_id) == ["Não entendi; pode reformular?"])
    # A hand-off keyword wins over a canned answer in the same message.
    await chatwoot.wait_for(lambda: chatwoot.replies(human.display_id) == ["Certo, vou chamar um atendente."])
    await chatwoot.wait_for(lambda: chatwoot.status_of(human.display_id) == "open")
    job = await finished_job(proc, human.account.id, human.display_id)
    assert job.backend == "local"
    assert not [r for r in crew.requests if r.kind == "crew"]


async def test_two_crews_on_two_back_ends_in_one_run(
    sidecar_factory: SidecarFactory, chatwoot: FakeChatwoot, crew: FakeCrew, mcp_server: FakeMcp
) -> None:
    """WhatsApp goes to an MCP crew, Facebook to a local crew: each reaches its own."""
    overrides = crews(
        whatsapp_crew={"backend": "mcp", "url": mcp_server.url, "token": mcp_server.token, "timeout_seconds": 3},
        facebook_crew=FAQ,
    )
    proc = await sidecar_factory(overrides)
    wa = chatwoot.open_conversation("whatsapp")
    fb = chatwoot.open_conversation("facebook")
    await chatwoot.customer_says(wa, "Quanto custa a barraca?")
    await chatwoot.customer_says(fb, "Quanto custa a barraca? qual o preço")

    await chatwoot.wait_for(lambda: len(chatwoot.replies(wa.display_id)) == 1)
    await chatwoot.wait_for(lambda: len(chatwoot.replies(fb.display_id)) == 1)
    assert "R$ 899,90" in (chatwoot.replies(wa.display_id)[0] or "")
    assert chatwoot.replies(fb.display_id) == ["A tabela de preços está em acme.example/precos."]
    [call] = mcp_server.calls_to("handle_message")
    assert call.arguments["chatwoot"]["channel"] == "whatsapp"
    assert (await finished_job(proc, wa.account.id, wa.display_id)).backend == "mcp"
    assert (await finished_job(proc, fb.account.id, fb.display_id)).backend == "local"
    assert not [r for r in crew.requests if r.kind == "crew"]
