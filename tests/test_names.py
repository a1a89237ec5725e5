"""The names the command line checks before torch is imported: read from the package's
source they are exactly what the registries hold; a method or stream registered at run time
counts; an unknown name is a one-line error with the closest name; where the source does
not spell a name out, the registry itself is asked. (That no torch is imported on the way
is checked through the command line in test_cli_help.py.)"""

import sys
import textwrap

import pytest

from anpyc import names
from anpyc.data.streams import STREAMS, StreamSpec
from anpyc.errors import ConfigError
from anpyc.methods.finetune import Finetune
from anpyc.methods.registry import METHODS
from anpyc.names import check_name, known_names, source_names


def test_the_source_gives_exactly_the_packages_registered_names():
    # a method or stream the source reader missed would be refused by the command line
    methods = {n for n, cls in METHODS.items() if cls.__module__.startswith("anpyc.")}
    streams = {n for n, spec in STREAMS.items() if spec.loader.__module__.startswith("anpyc.")}
    assert source_names("method") == methods and source_names("benchmark") == streams
    assert names._from_source("method")[1] and names._from_source("benchmark")[1]  # nothing left to the registry


def test_an_unknown_name_is_one_line_with_the_closest_name():
    with pytest.raises(ConfigError) as err:
        check_name("method", "fintune")
    assert str(err.value).startswith("unknown method 'fintune' (did you mean 'finetune'?); known: ")
    assert "\n" not in str(err.value) and "ewc" in str(err.value)


def test_a_method_registered_at_run_time_counts(monkeypatch):
    class Mine(Finetune):
        name = "my-own-finetune"

    assert "my-own-finetune" not in known_names("method")
    monkeypatch.setitem(METHODS, Mine.name, Mine)
    check_name("method", "my-own-finetune")
    assert "my-own-finetune" in known_names("method")
    with pytest.raises(ConfigError, match=r"did you mean 'my-own-finetune'\?"):
        check_name("method", "my-own-finetuen")


def test_a_stream_registered_at_run_time_counts(monkeypatch):
    monkeypatch.setitem(STREAMS, "my-blobs", StreamSpec("my-blobs", lambda data_dir, seed: {}, "split"))
    check_name("benchmark", "my-blobs")
    with pytest.raises(ConfigError, match="unknown benchmark 'my-blobz'"):
        check_name("benchmark", "my-blobz")


@pytest.fixture
def kind_of_things(monkeypatch, tmp_path):
    """A kind ``thing`` whose source names only ``alpha``; its registry, module
    ``anpyc_test_things`` (not imported yet), also holds ``beta``. Returns a setter for
    whether the source reading is complete."""
    (tmp_path / "anpyc_test_things.py").write_text("THINGS = {'alpha': 1, 'beta': 2}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "anpyc_test_things", raising=False)
    state = {"complete": False}
    monkeypatch.setitem(names._KINDS, "thing", (lambda: ({"alpha"}, state["complete"]), ("anpyc_test_things", "THINGS")))
    names._from_source.cache_clear()
    yield state
    names._from_source.cache_clear()
    sys.modules.pop("anpyc_test_things", None)


def test_a_name_the_source_does_not_spell_out_is_asked_of_the_registry(kind_of_things):
    check_name("thing", "beta")  # imports the registry's module, which has it
    with pytest.raises(ConfigError, match="unknown thing 'gamma'.*; known: alpha, beta$"):
        check_name("thing", "gamma")


def test_a_complete_source_is_trusted_without_importing_the_registry(kind_of_things):
    kind_of_things["complete"] = True
    with pytest.raises(ConfigError, match="unknown thing 'beta'.*; known: alpha$"):
        check_name("thing", "beta")
    assert "anpyc_test_things" not in sys.modules  # the slow import is what the source reading spares


def _package(root, files):
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(textwrap.dedent(text))
    return root


def test_the_method_reader_reads_the_listed_modules_and_every_way_of_naming(monkeypatch, tmp_path):
    _package(tmp_path, {
        "methods/__init__.py": "from anpyc.methods import plain, pair\nfrom anpyc.methods.base import Method\n",
        "methods/plain.py": """
            @register
            class A(Method):
                name = "a-plain"

            class NotRegistered(Method):
                name = "not-registered"
            """,
        "methods/pair.py": """
            @registry.register
            class B(Method):
                name, config_cls = "b-pair", BConfig
            """,
        "methods/base.py": '@register\nclass C(Method):\n    name = "c-in-a-module-not-listed"\n',
    })
    monkeypatch.setattr(names, "PACKAGE", tmp_path)
    assert names._methods() == ({"a-plain", "b-pair"}, True)
    (tmp_path / "methods" / "pair.py").write_text("@register\nclass B(Method):\n    name = PREFIX + 'b'\n")
    assert names._methods() == ({"a-plain"}, False)  # a computed name: the registry decides


def test_the_stream_reader_takes_calls_and_decorators_with_a_literal_name(monkeypatch, tmp_path):
    _package(tmp_path, {"data/streams.py": """
        register_stream("by-call", load, kind="split")

        @register_stream("by-decorator", kind="permuted")
        def loader(data_dir, seed):
            return {}

        def helper():
            register_stream("inside-a-function", load)  # not at module level: not a registration
        """})
    monkeypatch.setattr(names, "PACKAGE", tmp_path)
    assert names._streams() == ({"by-call", "by-decorator"}, True)
    with (tmp_path / "data" / "streams.py").open("a") as f:
        f.write("register_stream(NAME, load)\n")
    assert names._streams() == ({"by-call", "by-decorator"}, False)
