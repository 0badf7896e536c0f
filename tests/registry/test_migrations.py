"""Alembic: empty → head → base on SQLite and PostgreSQL; one head; serve's start-up check."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from partsbin.registry.config import Settings
from partsbin.registry.db.migrate import (
    SchemaState,
    alembic_config,
    current_revision,
    downgrade,
    head_revision,
    revision_graph,
    schema_state,
    upgrade,
)
from partsbin.registry.db.models import Base
from partsbin.registry.db.session import make_engine
from partsbin.registry.server import SchemaBehind, prepare_database


def _roundtrip(url: str) -> None:
    engine = make_engine(url)
    assert schema_state(engine) is SchemaState.EMPTY
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert set(Base.metadata.tables) <= set(sa.inspect(engine).get_table_names())
    # The migrations produce exactly what the models declare.
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    downgrade(engine, "base")
    assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(engine)
    assert schema_state(engine) is SchemaState.AT_HEAD
    engine.dispose()


def test_sqlite_empty_head_base(tmp_path):
    _roundtrip(f"sqlite:///{tmp_path / 'r.db'}")


@pytest.mark.postgres
def test_postgres_empty_head_base(postgres_url):
    _roundtrip(postgres_url)


def test_one_head_with_generated_ids():
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1
    # The quick reading of the revision graph (no Alembic import) agrees with Alembic's.
    assert head_revision() == script.get_current_head()
    assert revision_graph() == {r.revision: r.down_revision for r in script.walk_revisions()}
    revisions = list(script.walk_revisions())
    assert len({r.revision for r in revisions}) == len(revisions)
    assert all(len(r.revision) == 12 and int(r.revision, 16) >= 0 for r in revisions)


def test_serve_creates_new_and_refuses_behind_or_foreign(tmp_path):
    settings = Settings(data_dir=tmp_path / "d")
    assert prepare_database(settings) == "created"
    assert prepare_database(settings) == "ready"
    engine = make_engine(settings.resolved_database_url)
    revisions = [r.revision for r in ScriptDirectory.from_config(alembic_config()).walk_revisions()]
    if len(revisions) > 1:
        downgrade(engine, revisions[1])
        with pytest.raises(SchemaBehind, match="partsbin db upgrade"):
            prepare_database(settings)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'deadbeef0000'"))
    with pytest.raises(SchemaBehind, match="no known partsbin schema"):
        prepare_database(settings)
    engine.dispose()


def test_one_version_per_digest_names_existing_duplicates(tmp_path):
    # Databases from before the rule may hold identical bytes in two versions (a race
    # of concurrent uploads); the upgrade names them instead of failing obscurely.
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    upgrade(engine, "bb2234618bcc")
    row = "'lab', 'e', {v}, 'extractor', 'resnet_cifar', '{d}', 1, '{{}}', 16, 4, '2026-11-22 00:00:00+00:00'"
    with engine.begin() as conn:
        for v in (1, 2):
            conn.execute(
                sa.text(
                    "INSERT INTO components (namespace, name, version, role, arch_name, digest, size, card, junction_channels, junction_spatial, created_at) "
                    f"VALUES ({row.format(v=v, d='ab' * 32)})"
                )
            )
    with pytest.raises(RuntimeError, match=r"lab/e sha256:(ab){32} \(2 versions\)"):
        upgrade(engine)
    assert current_revision(engine) == "bb2234618bcc"
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM components WHERE version = 2"))
    upgrade(engine)
    assert schema_state(engine) is SchemaState.AT_HEAD
    engine.dispose()


def test_existing_evaluations_get_their_trust_from_the_token_that_posted_them(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "e492888ad5cf")
    with engine.begin() as conn:
        for tid, scope, owner, namespaces in (
            (1, "admin", 0, "[]"),
            (2, "publish", 1, '["lab"]'),
            (3, "publish", 0, '["lab"]'),
        ):
            conn.execute(
                sa.text(
                    "INSERT INTO tokens (id, token_hash, prefix, name, scope, namespaces, owner, created_at) "
                    "VALUES (:i, :h, 'pb_', '', :s, :n, :o, '2026-01-01')"
                ),
                {"i": tid, "h": f"h{tid}", "s": scope, "n": namespaces, "o": owner},
            )
        for cid, ns in ((1, "lab"), (2, "lab"), (3, "other")):
            conn.execute(
                sa.text(
                    "INSERT INTO components (id, namespace, name, version, role, arch_name, digest, size, card, "
                    "junction_channels, created_at) VALUES (:i, :ns, :n, 1, 'extractor', 'a', :d, 1, '{}', 8, '2026-01-01')"
                ),
                {"i": cid, "ns": ns, "n": f"c{cid}", "d": f"{cid:064x}"},
            )
        # (evaluation id, extractor, head, posted by) -> expected trust
        cases = {1: (1, 2, 1, "admin"), 2: (1, 2, 2, "owner"), 3: (1, 2, 3, "third-party"), 4: (1, 3, 2, "third-party")}
        for eid, (ext, head, by, _) in cases.items():
            conn.execute(
                sa.text(
                    "INSERT INTO evaluations (id, extractor_id, head_id, dataset, metric, value, samples, bn_mode, "
                    "details, created_at, created_by) VALUES (:i, :e, :h, 'd', 'recombination_accuracy', 0.9, 10, "
                    "'batch', '{}', '2026-01-01', :b)"
                ),
                {"i": eid, "e": ext, "h": head, "b": by},
            )
    upgrade(engine)
    with engine.connect() as conn:
        got = dict(conn.execute(sa.text("SELECT id, trust FROM evaluations")).all())
    assert got == {eid: case[3] for eid, case in cases.items()}
    engine.dispose()


def test_tags_search_text_and_lineage_are_backfilled_from_existing_cards(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    upgrade(engine, "e492888ad5cf")
    cards = {
        1: {"description": "the initial weights", "tags": ["iiw"]},
        2: {"description": "Adapted Extractor", "tags": ["a", " a ", "x" * 101], "compat": {"init": "lab/init"}},
        3: {"provenance": {"adapted_from": "sha256:" + "22" * 32, "job": "7"}, "compat": {"sibling": "lab/gone@4"}},
    }
    with engine.begin() as conn:
        for cid, card in cards.items():
            conn.execute(
                sa.text(
                    "INSERT INTO components (id, namespace, name, version, role, arch_name, digest, size, card, "
                    "junction_channels, created_at) VALUES (:id, 'lab', :name, 1, 'extractor', 'resnet_cifar', :d, 1, "
                    ":card, 16, '2026-11-22 00:00:00+00:00')"
                ),
                {
                    "id": cid,
                    "name": ["init", "adapted", "third"][cid - 1],
                    "d": f"{cid}{cid}" * 32,
                    "card": json.dumps(card),
                },
            )
    upgrade(engine)
    with engine.connect() as conn:
        descriptions = dict(conn.execute(sa.text("SELECT id, description FROM components")).all())
        tags = conn.execute(sa.text("SELECT component_id, tag FROM component_tags ORDER BY 1, 2")).all()
        edges = conn.execute(
            sa.text("SELECT component_id, kind, target, target_digest FROM lineage_edges ORDER BY 1, 2")
        ).all()
    assert descriptions == {1: "the initial weights", 2: "Adapted Extractor", 3: ""}
    assert tags == [(1, "iiw"), (2, "a")]  # stripped, once, and the unindexable long tag left out
    assert edges == [
        (2, "init", "lab/init", "11" * 32),  # "lab/init" as it was when component 2 was published
        (3, "adapted_from", "sha256:" + "22" * 32, "22" * 32),
        (3, "job", "7", None),
        (3, "sibling", "lab/gone@4", None),  # a ref this registry does not hold
    ]
    engine.dispose()
