"""Property-based fuzzing of the whole OpenAPI document with Schemathesis, over real HTTP.

Every operation gets a bounded number of generated requests (valid and invalid ones),
sent with an admin token to a registry that holds a few real components. The checks:
no 5xx, and every response (status, content type, headers, body) is what the document
says, so clients generated from it work.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from partsbin.registry.config import Settings
from tests.conftest import LiveRegistry, serve_registry
from tests.helpers import aux_rp, extractor_card, head_card, network, write_component

# Bounded so the run takes well under a minute on two cores; FUZZ_EXAMPLES=500 digs deeper.
EXAMPLES_PER_OPERATION = int(os.environ.get("FUZZ_EXAMPLES", "20"))
# Every check runs but "schema-valid data must be accepted": what the document cannot
# express (a safetensors header, a job spec's tasks, whether a ref names something) is
# rightly refused with a 422 that says what to fix.
EXCLUDED = [schemathesis.checks.positive_data_acceptance]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveRegistry, str, int]]:
    import httpx

    tmp = tmp_path_factory.mktemp("fuzz")
    with serve_registry(Settings(data_dir=tmp / "data")) as live:
        from partsbin.registry.crud.tokens import create_token

        with live.session() as session:
            row, admin = create_token(session=session, scope="admin", name="fuzzer")
            session.commit()
        aux, card = aux_rp()
        net = network(1)
        with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {admin}"}) as http:
            r = http.post("/components", files={"file": write_component(tmp / "a", aux, card).read_bytes()})
            anchor = r.json()["digest"]
            for path, module, c in (
                (tmp / "e", net.extractor(), extractor_card("lab/ext", [anchor])),
                (tmp / "h", net.head(), head_card("lab/head", [anchor])),
            ):
                assert http.post(
                    "/components", files={"file": write_component(path, module, c).read_bytes()}
                ).is_success
        yield live, admin, row.id


@pytest.fixture(scope="module")
def api_schema(fuzzed):  # type: ignore[no-untyped-def]
    live, _, _ = fuzzed
    return schemathesis.openapi.from_url(f"{live.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_every_operation_answers_as_documented(case, fuzzed):  # type: ignore[no-untyped-def]
    live, admin, own_token = fuzzed
    if (
        case.method == "DELETE"
        and case.path == "/tokens/{token_id}"
        and case.path_parameters.get("token_id") == own_token
    ):
        case.path_parameters["token_id"] = own_token + 10_000  # the fuzzer must not revoke its own token
    case.call_and_validate(base_url=live.url, headers={"Authorization": f"Bearer {admin}"}, excluded_checks=EXCLUDED)
