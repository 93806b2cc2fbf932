"""The dialog through the text endpoint: real Rasa model, real storage."""

import sqlite3

import aiohttp
import pytest

from tests.agents import basic


async def post(http, url, body):
    async with http.post(url, json=body) as resp:
        return resp.status, (await resp.json() if resp.content_type == "application/json" else await resp.text())


@pytest.mark.parametrize(
    "number, company, disclosure",
    [
        ("+4930123456", "Muster Versand GmbH", "automatische"),
        ("+442071234567", "Acme Supplies Ltd", "automated assistant"),
    ],
)
async def test_greeting_names_the_company_and_discloses_the_bot(ivr_server, number, company, disclosure):
    async with aiohttp.ClientSession() as http:
        status, turn = await post(http, f"{ivr_server.url}/api/conversations", {"to": number, "from": "+4917099"})
    assert status == 200
    assert company in turn["replies"][0] and disclosure in turn["replies"][0]
    assert turn["intent"] == "start_call" and not turn["ended"]


@pytest.mark.parametrize(
    "number, text, intent",
    [
        ("+4930123456", "ähm wann haben sie denn geöffnet", "faq"),
        ("+442071234567", "uh what are your opening hours", "faq"),
        ("+4930123456", "bist du ein roboter", "bot_challenge"),
    ],
)
async def test_caller_text_is_understood(ivr_server, number, text, intent):
    async with aiohttp.ClientSession() as http:
        _, start = await post(http, f"{ivr_server.url}/api/conversations", {"to": number})
        status, turn = await post(
            http, f"{ivr_server.url}/api/conversations/{start['conversation_id']}/messages", {"text": text}
        )
    assert status == 200
    assert turn["intent"] == intent and turn["confidence"] > 0.5
    assert turn["replies"] and not turn["ended"]


async def test_asking_for_a_person_hands_off_and_is_stored(ivr_server):
    async with aiohttp.ClientSession() as http:
        _, start = await post(http, f"{ivr_server.url}/api/conversations", {"to": "+4930123456", "from": "+4917011"})
        cid = start["conversation_id"]
        _, turn = await post(
            http,
            f"{ivr_server.url}/api/conversations/{cid}/messages",
            {"text": "ich möchte mit einem mitarbeiter sprechen"},
        )
        assert turn["intent"] == "request_human"
        assert turn["handoff"]["reason"] == "caller_request" and turn["ended"]
        assert turn["handoff"]["queue"] == "muster-general" and turn["handoff"]["handoff_id"]
        status, _ = await post(http, f"{ivr_server.url}/api/conversations/{cid}/messages", {"text": "hallo"})
        assert status == 404  # the conversation is over
        async with http.get(f"{ivr_server.url}/api/calls/{cid}") as resp:
            assert resp.status == 401  # transcripts are personal data: only for logged-in agents
        async with http.get(f"{ivr_server.url}/api/calls/{cid}", auth=basic("anna")) as resp:
            stored = await resp.json()
    assert stored["call"]["end_reason"] == "handoff" and stored["call"]["ended_at"]
    speakers = [(u["speaker"], u["intent"]) for u in stored["transcript"]]
    assert speakers == [("bot", None), ("caller", "request_human"), ("bot", None)]


async def test_keypad_zero_reaches_a_person_and_star_repeats(ivr_server):
    async with aiohttp.ClientSession() as http:
        _, start = await post(http, f"{ivr_server.url}/api/conversations", {"to": "+442071234567"})
        cid = start["conversation_id"]
        _, repeated = await post(http, f"{ivr_server.url}/api/conversations/{cid}/messages", {"dtmf": "*"})
        assert repeated["replies"] == start["replies"]
        _, turn = await post(http, f"{ivr_server.url}/api/conversations/{cid}/messages", {"dtmf": "0"})
    assert turn["handoff"]["reason"] == "dtmf_agent"


async def test_no_input_reprompts_then_hands_off(ivr_server):
    async with aiohttp.ClientSession() as http:
        _, start = await post(http, f"{ivr_server.url}/api/conversations", {"to": "+4930123456"})
        url = f"{ivr_server.url}/api/conversations/{start['conversation_id']}/messages"
        turns = [(await post(http, url, {"no_input": True}))[1] for _ in range(3)]
    assert [t["ended"] for t in turns] == [False, False, True]  # max_no_input = 2 in the test settings
    assert turns[0]["replies"] and turns[0]["intent"] == "no_input"
    assert turns[2]["handoff"]["reason"] == "no_input"


async def test_bad_requests_are_refused_clearly(ivr_server):
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{ivr_server.url}/api/conversations", data="nope") as resp:
            assert resp.status == 400 and "JSON" in await resp.text()
        _, start = await post(http, f"{ivr_server.url}/api/conversations", {"to": "+4930123456"})
        status, error = await post(
            http, f"{ivr_server.url}/api/conversations/{start['conversation_id']}/messages", {"txt": "x"}
        )
        assert status == 400 and error["field"] == "text"  # errors are JSON naming the field
        status, _ = await post(http, f"{ivr_server.url}/api/conversations/text-unknown/messages", {"text": "x"})
        assert status == 404
    rows = (
        sqlite3.connect(ivr_server.db)
        .execute("select count(*) from calls where call_id = ?", (start["conversation_id"],))
        .fetchone()
    )
    assert rows == (1,)
