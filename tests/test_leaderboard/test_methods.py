"""Method registry: `all` means the implemented, visible methods; names resolve lazily; every
registered class carries its registry name, description and paper."""

from __future__ import annotations

import pytest

from baselines.base import Detector
from leaderboard.errors import BenchError
from leaderboard.methods import METHODS, MethodEntry, load_class, resolve, runnable, suite
from leaderboard.methods.listing import list_rows


def select(spec: str, reg: dict | None = None) -> list[str]:
    return resolve(spec, reg)[0]

IMPLEMENTED = [n for n, e in METHODS.items() if e.implemented]


def test_all_is_the_implemented_builtin_methods() -> None:
    reg = {
        "a": MethodEntry("a", "harness_methods:PixelStats"),
        "outside": MethodEntry("outside", "harness_methods:PixelStats", origin="entry point"),
        "planned": MethodEntry("planned", None, "not written yet"),
        "b": MethodEntry("b", "harness_methods:PixelStats"),
    }
    assert select("all", reg) == runnable(reg) == ["a", "b"]
    assert select("outside,a", reg) == ["outside", "a"]
    real = runnable()
    assert real == ["padim", "patchcore", "sa_patchcore", "sa_patchcore_eq4", "sa_patchcore_dual",
                    "patchsvdd", "cs_flow"]


def test_select_list_keeps_order_and_drops_repeats() -> None:
    assert select("patchcore, patchcore,all")[:2] == ["patchcore", "padim"]


@pytest.mark.parametrize("spec,match", [("nosuch", "unknown method 'nosuch'"), (" , ", "empty"),
                                         ("planned", "not implemented yet")])
def test_bad_names_say_what_exists(spec: str, match: str) -> None:
    reg = {**METHODS, "planned": MethodEntry("planned", None, "not written yet", "someone 2020")}
    with pytest.raises(BenchError, match=match):
        select(spec, reg)


def test_empty_registry_all_is_an_error() -> None:
    reg = {"x": MethodEntry("x", None, "planned", "someone 2020")}
    with pytest.raises(BenchError, match="no method"):
        select("all", reg)


@pytest.mark.parametrize("name", IMPLEMENTED)
def test_every_entry_imports_a_detector_with_its_own_name(name: str) -> None:
    klass = load_class(name)
    assert issubclass(klass, Detector)
    assert klass.name == (METHODS[name].variant_of or name)  # Detector.load relies on it
    assert klass.description.strip()
    assert METHODS[name].target.count(":") == 1


def test_loading_is_lazy_and_checked() -> None:
    reg = {"bad": MethodEntry("bad", "leaderboard.errors:BenchError")}
    with pytest.raises(BenchError, match="not a subclass of baselines.base.Detector"):
        load_class("bad", reg)
    with pytest.raises(BenchError, match="not registered"):
        load_class("nosuch")


def test_ablation_suite_is_every_variant_after_its_base() -> None:
    names = suite("ablations")
    assert names[:4] == ["sa_patchcore", "sa_patchcore-avgpool", "sa_patchcore-nopool",
                         "sa_patchcore-layer2and3"]
    assert names[4] == "sa_patchcore_eq4" and len(names) == 8
    assert not set(names[1:4]) & set(runnable())  # variants are not part of `all`
    assert METHODS["sa_patchcore-nopool"].preset == {"sa_pooling": "none"}
    with pytest.raises(BenchError, match="unknown suite"):
        suite("nosuch")


def test_dual_suite_is_this_projects_method_and_its_study() -> None:
    names = suite("dual")
    assert names == ["sa_patchcore_dual", "sa_patchcore_dual-local", "sa_patchcore_dual-global",
                     "sa_patchcore_dual-maxglobal", "sa_patchcore_dual-uncalibrated",
                     "sa_patchcore_dual-zscore"]
    assert all(METHODS[n].origin == "project" for n in names)
    assert "sa_patchcore_dual" in runnable()  # `make bench` shows it (its row says whose)
    assert not set(names[1:]) & set(runnable())  # its study variants run with --suite dual
    rows = {name: (status, desc, paper) for name, status, desc, paper in list_rows()[0]}
    for name in names:
        status, _, paper = rows[name]
        assert status == "ready" and paper == "this project's method (not from a paper)"
    assert "not from a paper" in rows["sa_patchcore_dual"][1]


def test_a_project_methods_row_says_so() -> None:
    from types import SimpleNamespace

    from leaderboard.reporting.cells import row_label

    record = SimpleNamespace(method=SimpleNamespace(origin="project", budget=None))
    assert row_label("sa_patchcore_dual", [record]) == \
        "sa_patchcore_dual (this project's method, not from a paper)"
