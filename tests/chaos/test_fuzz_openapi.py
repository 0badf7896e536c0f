"""Property-based fuzzing of the whole OpenAPI document with Schemathesis, over real HTTP.

Every operation gets a bounded number of generated requests (valid and invalid ones),
sent with an admin token to a registry that holds a few real components. Every check of
Schemathesis runs: no 5xx; every response (status, content type, headers, body) is what
the document says, so clients generated from it work; a request the document allows is
accepted (ST202) and one it forbids is refused (ST201), so the document states what the
routes require.
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
# The operations where "schema-valid data is accepted" (ST202) cannot hold, and why: what
# they require is beyond what OpenAPI can state, and is refused with a 422 that says what
# to fix. Every other check runs on them, and every check on every other operation.
ACCEPTANCE_INAPPLICABLE = {
    # The file's bytes: a safetensors header whose card the checks pass.
    ("POST", "/components"): "a safetensors file and its card",
    # The file's bytes: an .npz or a tar of images partsbin can read, and a data card.
    ("POST", "/datasets"): "a dataset file and its data card",
    # A spec of one of the job kinds (plugins add more), whose paths lie under the
    # deployment's data roots and whose cost is within its limits.
    ("POST", "/jobs"): "a job spec the deployment runs",
    # "Exactly one of ?head= and ?extractor=": parameters cannot say "one of".
    ("GET", "/compatible"): "exactly one of two parameters",
    # "?extractor=, ?head= or both": parameters cannot say "at least one of".
    ("GET", "/evaluations"): "at least one of two parameters",
    # Not a limit of the document: in some runs Schemathesis 4.32.5 draws "positive" bodies
    # outside the bounds the document states (classes 12424324879157 against maximum
    # 2147483647, job_id 0 against minimum 1), which the route rightly refuses. Remove once
    # its generator keeps to them; every other check runs here.
    ("POST", "/evaluations"): "Schemathesis draws integers outside the stated bounds",
}


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveRegistry, str, int]]:
    import httpx

    tmp = tmp_path_factory.mktemp("fuzz")
    # As many subscriptions per namespace as a registry allows: the fuzzer makes one per
    # POST /webhooks, and past the limit a valid request is refused for the registry's state.
    with serve_registry(Settings(data_dir=tmp / "data", max_webhooks_per_namespace=1000)) as live:
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
    excluded = (
        [schemathesis.checks.positive_data_acceptance] if (case.method, case.path) in ACCEPTANCE_INAPPLICABLE else []
    )
    case.call_and_validate(base_url=live.url, headers={"Authorization": f"Bearer {admin}"}, excluded_checks=excluded)
