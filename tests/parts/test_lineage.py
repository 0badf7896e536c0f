"""Card fields -> lineage relations: one mapping, named fields only."""

from __future__ import annotations

from partsbin.parts.lineage import CARD_RELATIONS, relations_of


def test_every_named_field_becomes_a_relation_and_nothing_else_does():
    card = {
        "compat": {"init": "lab/run-init@1", "sibling": "lab/run-a-extractor@2", "anchors": ["sha256:" + "aa" * 32]},
        "provenance": {
            "job": "12",
            "adapted_from": "sha256:" + "01" * 32,
            "updated_from": "sha256:" + "02" * 32,
            "finetuned_from": "sha256:" + "03" * 32,
            "dataset": {"name": "digits"},
        },
        "bridge": {"from": "sha256:" + "04" * 32, "to": "sha256:" + "05" * 32},
        "description": "sha256:" + "06" * 32,
    }
    got = [(r.kind, r.target, r.target_kind) for r in relations_of(card)]
    assert got == [
        ("init", "lab/run-init@1", "ref"),
        ("sibling", "lab/run-a-extractor@2", "ref"),
        ("job", "12", "job"),
        ("adapted_from", "sha256:" + "01" * 32, "digest"),
        ("updated_from", "sha256:" + "02" * 32, "digest"),
        ("finetuned_from", "sha256:" + "03" * 32, "digest"),
        ("bridge_from", "sha256:" + "04" * 32, "digest"),
        ("bridge_to", "sha256:" + "05" * 32, "digest"),
    ]
    assert len(CARD_RELATIONS) == len(got)
    assert [r.label for r in relations_of({"provenance": {"adapted_from": "sha256:" + "01" * 32}})] == ["adapted from"]


def test_missing_empty_or_malformed_fields_give_no_relation():
    assert relations_of({}) == []
    assert relations_of({"compat": {"init": None, "sibling": ""}, "provenance": None, "bridge": "not an object"}) == []
