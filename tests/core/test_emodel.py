"""E-model (ITU-T G.107, simplified): R from delay, codec and loss, then MOS."""

from __future__ import annotations

from types import ModuleType

import pytest


def test_a_clean_g711_call_rates_at_the_g107_default(twin: ModuleType) -> None:
    q = twin.e_model(0.0, 0.0, "PCMU")
    assert q.r_factor == pytest.approx(93.2)
    assert q.mos == pytest.approx(4.41, abs=0.01)


def test_delay_beyond_177_ms_costs_more_per_millisecond(twin: ModuleType) -> None:
    r0 = twin.e_model(0.0, 0.0, "PCMA").r_factor
    r100 = twin.e_model(100.0, 0.0, "PCMA").r_factor
    r300 = twin.e_model(300.0, 0.0, "PCMA").r_factor
    assert r0 - r100 == pytest.approx(2.4)
    assert r0 - r300 == pytest.approx(0.024 * 300 + 0.11 * (300 - 177.3))


def test_loss_impairs_through_the_codec_robustness(twin: ModuleType) -> None:
    # Ie_eff = Ie + (95 - Ie) * Ppl / (Ppl + Bpl): G.711 with PLC, Bpl 25.1.
    q = twin.e_model(0.0, 5.0, "pcmu")
    assert q.r_factor == pytest.approx(93.2 - 95 * 5 / 30.1)
    assert twin.e_model(0.0, 1.0, "G729").mos < twin.e_model(0.0, 1.0, "PCMU").mos


def test_mos_stays_within_its_scale(twin: ModuleType) -> None:
    assert twin.e_model(2000.0, 100.0, "G729").mos == 1.0
    assert 1.0 <= twin.e_model(150.0, 3.0, "opus").mos <= 4.5


def test_unknown_codec_is_refused_by_name(twin: ModuleType) -> None:
    with pytest.raises(ValueError, match="no E-model values for codec 'speex'"):
        twin.e_model(0.0, 0.0, "speex")
