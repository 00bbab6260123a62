"""The scrubbing corpus, end to end through a real Tracer: redaction rate per placement, false positives."""

from __future__ import annotations

from .corpus import PLACEMENTS, credentials, measure_false_positives, measure_redaction

SEEDS = range(3)  # 3 x 39 credentials per placement: one miss is already below 99 %


def test_corpus_is_large_enough() -> None:
    kinds = {credential.kind for credential in credentials(0)}
    assert len(kinds) >= 34
    assert len(PLACEMENTS) >= 26
    assert {placement.needs for placement in PLACEMENTS} == {"plain", "mask", "batch"}


def test_every_placement_redacts_at_least_99_percent() -> None:
    results = measure_redaction(SEEDS)
    failing = {result.placement: (f"{result.rate:.1%}", result.misses) for result in results if result.rate < 0.99}
    assert not failing, failing


def test_false_positives_stay_at_most_2_percent() -> None:
    items, changed = measure_false_positives()
    assert items >= 300
    assert len(changed) / items <= 0.02, changed


def test_the_corpus_would_catch_scrubbing_being_off() -> None:
    # The measurement itself: with scrub=False every credential must show up as a leak.
    results = measure_redaction(range(1), scrub=False)
    assert all(result.rate == 0.0 for result in results), [(r.placement, r.rate) for r in results]
