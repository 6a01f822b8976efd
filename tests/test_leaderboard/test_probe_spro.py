"""sPRO end to end (issue 34 item 3): a run on a MVTec LOCO AD folder keeps each defect region,
scores sPRO from the maps the cell measured, stores it in the record and shows it beside
AU-PRO; an older record says it has none."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures import DUMMY
from test_cadsd.test_zoo import write_loco

from leaderboard.records import RECORDS_DIR, scan_records
from leaderboard.reporting.report import render_markdown


@pytest.fixture(scope="module")
def loco_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from leaderboard.running.bench import bench_run

    base = tmp_path_factory.mktemp("loco")
    root = write_loco(base / "loco")
    out = base / "run"
    bench_run(methods=DUMMY, dataset=str(root), out=out, echo=lambda line: None,
              resamples=50, warmup=1)
    return out


def test_a_loco_cell_stores_spro_per_group_and_its_mean(loco_run: Path) -> None:
    from leaderboard.running import data
    from leaderboard.scoring.spro import Region, spro_by_group

    (record,), bad = scan_records(loco_run)
    spro = record.metrics.spro
    assert not bad and spro is not None and set(spro.group) == {"logical", "structural"}
    for g in spro.group.values():  # 2 images x 2 regions each, 3 normal images
        assert (g.n_regions, g.n_empty, g.n_images) == (4, 0, 5)
        assert 0 <= g.fpr_0_05 <= 1 and 0 <= g.fpr_0_3 <= 1
    assert spro.mean_0_3 == pytest.approx(
        (spro.group["logical"].fpr_0_3 + spro.group["structural"].fpr_0_3) / 2)
    # the stored numbers are spro_by_group of the method's maps and the decoded regions
    from harness_methods import PixelStats

    resolved = data.resolve_all(record.dataset.source, echo=lambda line: None)[0]
    view = data.load(resolved).view(record.input)
    test = view.test
    model = PixelStats(**{k: v for k, v in record.method.params.items()}).fit(
        view.train.batch(0, len(view.train)))
    maps = np.stack([model.predict(test.batch(i, i + 1)).maps[0].numpy()
                     for i in range(len(test))])
    regions = [[Region.from_fraction(m.numpy(), f) for m, f in image] for image in test.regions]
    assert [len(r) for r in regions] == [0, 0, 0, 2, 2, 2, 2]
    again = spro_by_group(maps, regions, test.groups)
    assert again.mean_0_05 == pytest.approx(spro.mean_0_05)
    assert again.group["logical"].fpr_0_3 == pytest.approx(spro.group["logical"].fpr_0_3)


def test_the_leaderboard_shows_spro_beside_au_pro_and_old_records_say_none(
        loco_run: Path) -> None:
    records, _ = scan_records(loco_run)
    board = render_markdown(records)
    assert "## sPRO (%) up to FPR 0.05 per category" in board
    assert "## AU-PRO (%) up to FPR 0.3 per category" in board
    value = records[0].metrics.spro
    assert f"{100 * value.mean_0_3:.1f} [" in board
    path = next((loco_run / RECORDS_DIR).glob("*.json"))
    old = json.loads(path.read_text())
    old["schema_version"] = 3
    del old["metrics"]["spro"], old["dataset"]["leaked"]
    from leaderboard.records import parse_record

    older = parse_record(old)
    assert older.metrics.spro is None
    board = render_markdown([older])
    assert "sPRO n/a: records written before sPRO was computed" in board
