"""Pieces of live calls that need no SIP: where prompts are, call ids, the prompt language."""

from __future__ import annotations

import re
from pathlib import Path

from appliance.calls.legs import new_call_id
from appliance.calls.live import PromptLibrary
from appliance.config import open_store
from appliance.config.records import InboundNumber, Prompt
from appliance.settings import IvrSettings, PromptLanguage, Settings
from appliance.switch.callcenter import CallCenter, CallCenterConfig


def test_a_site_prompt_is_found_relative_to_the_prompts_folder_or_absolute() -> None:
    root = Path("/data/prompts")
    library = PromptLibrary(root, "zh", {"welcome": "site/hello.wav", "menu": "/srv/menu.wav"})
    assert library.path("welcome") == root / "site" / "hello.wav"
    assert library.path("menu") == Path("/srv/menu.wav")


def test_a_built_in_prompt_is_found_in_the_language_folder() -> None:
    library = PromptLibrary(Path("/data/prompts"), "en", {})
    assert library.path("goodbye") == Path("/data/prompts/en/goodbye.wav")


def test_call_ids_differ_and_start_with_the_utc_second() -> None:
    ids = {new_call_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"20\d{12}-[0-9a-f]{8}", call_id) for call_id in ids)


async def test_a_numbers_language_wins_over_the_sites(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path), ivr=IvrSettings(PromptLanguage.EN))
    store = open_store(settings)
    try:
        center = CallCenter(settings, store)
        center.apply(
            CallCenterConfig(
                numbers=[
                    InboundNumber("4008001234", "main", language=PromptLanguage.ZH),
                    InboundNumber("4008005678", "main"),
                ],
                prompts=[Prompt("welcome", "hello.wav")],
            )
        )
        chinese, english = center.prompts("4008001234"), center.prompts("4008005678")
    finally:
        store.close()
    assert chinese.path("menu") == settings.prompts_path / "zh" / "menu.wav"
    assert english.path("menu") == settings.prompts_path / "en" / "menu.wav"
    assert english.path("welcome") == settings.prompts_path / "hello.wav"
