import pytest

from partsbin.parts.names import InvalidName, parse_ref, validate_name


@pytest.mark.parametrize(
    "text,kind,path",
    [
        ("acme/resnet", "latest", "/components/acme/resnet"),
        ("acme/resnet@3", "version", "/components/acme/resnet/versions/3"),
        ("acme/resnet:stable", "alias", "/components/acme/resnet/aliases/stable"),
        ("sha256:" + "a" * 64, "digest", "/components/by-digest/" + "a" * 64),
    ],
)
def test_refs(text, kind, path):
    ref = parse_ref(text)
    assert ref.kind == kind and ref.api_path() == path and str(ref) == text


@pytest.mark.parametrize(
    "bad",
    [
        "acme",
        "a/b/c",
        "Acme/x",
        "acme/../x",
        "acme/..",
        "acme/x\n",
        "acme/-x",
        "acme/" + "x" * 65,
        "by-digest/x",
        "acme/x y",
    ],
)
def test_bad_names(bad):
    with pytest.raises(InvalidName):
        validate_name(bad)


@pytest.mark.parametrize("bad", ["acme/x@0", "acme/x@v1", "acme/x:", "sha256:abc", ""])
def test_bad_refs(bad):
    with pytest.raises(InvalidName):
        parse_ref(bad)
