"""anomalib's models under this harness (issue 32): one of each kind, at the smoke budget on tiny
images. Training-free (Patchcore), trained (Stfpm, anomalib's own loss and optimizer, progress
reported; Fastflow with the harness's backbone in resnet18's place), refused (a model needing a download; the extra not installed), the backbone handed
over with the harness's own weights, rows labelled with anomalib's version, and a finished cell
of another anomalib version never mixed into a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import run_bench
from fixtures import COUNTS, write_layout

pytest.importorskip("anomalib")

from baselines import anomalib_zoo as zoo
from baselines.errors import DetectorError
from baselines.training import Progress
from leaderboard.errors import UsageError
from leaderboard.methods import resolve
from leaderboard.records import RECORDS_DIR, load_records

pytestmark = pytest.mark.timeout(300)
SMALL = {"image_size": 64, "backbone": "efficientnet_lite2"}


class Steps(Progress):
    def __init__(self) -> None:
        self.losses: list[float] = []
        self.stages: list[tuple[str, int]] = []

    def stage(self, name: str, total: int) -> None:
        self.stages.append((name, total))

    def advance(self, steps: int = 1, **metrics: float) -> None:
        if "loss" in metrics:
            self.losses.append(metrics["loss"])


def test_layers_map_by_stride_and_weights_are_the_harness_s() -> None:
    from baselines.components.backbones import build_model

    assert zoo.map_layers(["layer2", "layer3"], "tf_efficientnet_lite2") == ["blocks.2", "blocks.4"]
    assert zoo.map_layers(["layer1", "layer2"], "resnet18") == ["layer1", "layer2"]
    model = zoo.Patchcore(**SMALL)
    got = model.module.model.feature_extractor.feature_extractor.state_dict()
    want = build_model("efficientnet_lite2")[0].state_dict()
    assert got and all(torch.equal(v, want[k]) for k, v in got.items())
    assert model.module.model.layers == ["blocks.2", "blocks.4"]
    # the backbone's normalisation ([-1, 1] for the TF-trained Lite2), not ImageNet's
    normalize = model.module.pre_processor.transform.transforms[-1]
    assert list(normalize.mean) == [0.5] * 3 and list(normalize.std) == [0.5] * 3
    # Fastflow names ResNets only: Lite2 is built in resnet18's place, at strides 4, 8, 16,
    # with its weights, and Fastflow's own LayerNorms and flows sized from its features
    import anomalib.models.image.fastflow.torch_model as fastflow
    import timm

    flow = zoo.Fastflow(**SMALL, max_steps=1).module.model
    got = flow.feature_extractor.state_dict()
    assert got and all(torch.equal(v, want[k]) for k, v in got.items())
    assert [tuple(n.normalized_shape) for n in flow.norms] == [(24, 16, 16), (48, 8, 8),
                                                               (120, 4, 4)]
    assert fastflow.timm is timm  # put back once built
    # mobilenet_v2 (no timm name): the harness's module itself, its layers of anomalib's strides
    mobile = zoo.Patchcore(backbone="mobilenet_v2", image_size=64)
    want = build_model("mobilenet_v2")[0].state_dict()
    got = mobile.module.model.feature_extractor.feature_extractor.state_dict()
    assert got and all(torch.equal(v, want[k]) for k, v in got.items())
    assert mobile.module.model.layers == ["features.6", "features.13"]
    with pytest.raises(DetectorError, match="efficientnet_lite2"):
        zoo.Stfpm.check_backbone("mobilenet_v2")
    # offline, `--backbone auto` gives anomalib's Patchcore the built-in PatchCore's fallback
    assert zoo.Patchcore.fallback_backbone == "mobilenet_v2"
    assert zoo.Stfpm.fallback_backbone == "efficientnet_lite2"


def test_training_free_model_fits_and_gives_raw_scores_and_maps() -> None:
    gen = torch.Generator().manual_seed(0)
    train = torch.rand(6, 3, 64, 64, generator=gen) * 0.2 + 0.4
    model = zoo.Patchcore(**SMALL, coreset_sampling_ratio=0.5).fit(train)
    odd = train[:2].clone()
    odd[:, :, 20:40, 20:40] = 1.0  # a bright square: farther from the memory bank
    pred = model.predict(torch.cat([train[:2], odd]))
    assert pred.scores.shape == (4,) and pred.maps.shape == (4, 64, 64)
    assert pred.scores[2:].min() > pred.scores[:2].max()
    # raw distances: anomalib's normalisation to [0, 1] is off
    assert pred.scores.max() > 1.0
    assert model.fit_timings["total"] > 0 and "train" in model.fit_timings


def test_trained_model_trains_with_anomalib_s_loss_and_reports_progress() -> None:
    progress = Steps()
    model = zoo.Stfpm(**SMALL, max_steps=3)
    teacher = {k: v.clone() for k, v in model.module.model.teacher_model.state_dict().items()}
    student = {k: v.clone() for k, v in model.module.model.student_model.state_dict().items()}
    model.fit(torch.rand(8, 3, 64, 64), progress)
    assert progress.stages == [("train", 3)] and len(progress.losses) == 3
    assert model.fit_notes["steps"] == 3
    after_t = model.module.model.teacher_model.state_dict()
    after_s = model.module.model.student_model.state_dict()
    assert all(torch.equal(v, after_t[k]) for k, v in teacher.items())  # frozen teacher
    assert any(not torch.equal(v, after_s[k]) for k, v in student.items())  # trained student
    assert model.predict(torch.rand(2, 3, 64, 64)).maps.shape == (2, 64, 64)


def test_refusals_name_the_missing_file_or_the_install() -> None:
    with pytest.raises(UsageError, match="DTD"):
        resolve("anomalib:Draem")
    with pytest.raises(UsageError, match="runs anomalib's"):
        resolve("anomalib:NoSuchModel")
    names, reg = resolve("patchcore,anomalib:Patchcore,anomalib:all-offline")
    assert names[:2] == ["patchcore", "anomalib-patchcore"] and len(names) >= 11
    assert reg["anomalib-patchcore"].version == zoo.available()


def test_without_the_extra_anomalib_names_fail_with_the_install_command(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zoo, "available", lambda: None)
    with pytest.raises(UsageError, match=r"cadsd-bench\[anomalib\]"):
        resolve("anomalib:Patchcore")


def test_a_run_labels_rows_refuses_downloads_and_never_mixes_versions(
        capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    root = write_layout(tmp_path / "data", counts=COUNTS, size=40, masks=True)
    out = tmp_path / "run"
    base = ["run", "--dataset", str(root), "--budget", "smoke", "--out", str(out)]
    # ReverseDistillation's decoder mirrors a ResNet, whose weights are not here: refused
    # before the folder exists
    code, text = run_bench(capsys, *base, "--methods", "anomalib:ReverseDistillation",
                           "--backbone", "efficientnet_lite2")
    assert code == 2 and "resnet18" in text and not out.exists()
    code, text = run_bench(capsys, *base, "--methods",
                           "anomalib:Patchcore,anomalib:Stfpm,anomalib:Fastflow",
                           "--backbone", "efficientnet_lite2",
                           "--param", "anomalib:Patchcore.image_size=64",
                           "--param", "anomalib:Stfpm.image_size=64",
                           "--param", "anomalib:Fastflow.image_size=64",
                           "--param", "anomalib:Patchcore.coreset_sampling_ratio=0.5")
    assert code == 0, text
    # the slow default coreset is announced before the first cell
    assert "Note: anomalib:Patchcore keeps a 0.5 coreset" in text
    records = load_records(out)
    assert {r.method.name for r in records} == {"anomalib-patchcore", "anomalib-stfpm",
                                                "anomalib-fastflow"}
    # Fastflow takes ResNet names only: the harness's backbone stands in at their strides
    fastflow = next(r for r in records if r.method.name == "anomalib-fastflow")
    assert "tf_efficientnet_lite2 features at strides 4, 8, 16" in \
        fastflow.model.fit_notes["backbone_in_place_of"]
    assert all(r.ok and r.method.distribution_version == zoo.available() for r in records)
    pc = next(r for r in records if r.method.name == "anomalib-patchcore")
    assert pc.method.params["coreset_sampling_ratio"] == 0.5
    assert "the backbone's (efficientnet_lite2" in pc.input.normalization
    board = (out / "leaderboard.md").read_text()
    assert f"| patchcore · anomalib {zoo.available()} |" in board
    assert f"stfpm · anomalib {zoo.available()} (budget smoke)" in board
    # pushed to the Hub (dry run) as any cell: anomalib's version and file kept, no local path
    from leaderboard.hub.push import push_run

    push_run(out, "lab/zoo", dry_run=tmp_path / "dry")
    pushed = json.loads(next((tmp_path / "dry").rglob("records/*fastflow*.json")).read_text())
    assert pushed["method"]["distribution_version"] == zoo.available()
    assert pushed["method"]["source_file"] == "anomalib/models/image/fastflow/lightning_model.py"
    texts = [p.read_text(errors="ignore") for p in (tmp_path / "dry").rglob("*.json")]
    assert texts and not any(str(tmp_path) in t or str(Path.home()) in t for t in texts)
    # the same cell from another anomalib version is refused, not mixed
    path = next((out / RECORDS_DIR).glob("*patchcore*.json"))
    record = json.loads(path.read_text())
    record["method"]["distribution_version"] = "2.6.0"
    path.write_text(json.dumps(record))
    code, text = run_bench(capsys, *base, "--methods", "anomalib:Patchcore",
                           "--backbone", "efficientnet_lite2",
                           "--param", "anomalib:Patchcore.image_size=64",
                           "--param", "anomalib:Patchcore.coreset_sampling_ratio=0.5")
    assert code != 0 and "anomalib 2.6.0" in text and "never mixed" in text
    # an unknown constructor argument is refused naming the valid ones
    code, text = run_bench(capsys, *base, "--methods", "anomalib:Stfpm", "--force",
                           "--param", "anomalib:Stfpm.no_such=1")
    assert code == 2 and "no setting 'no_such'" in text


def test_anomalib_patchcore_is_this_project_s_up_to_two_named_differences(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Same backbone, layers, input and a full memory bank (no coreset: the sampling is one
    named difference), with the layer-3 upsampling switched to anomalib's bilinear (the other;
    SA-PatchCore's official code upsamples nearest): the same scores, to float precision."""
    import torch.nn.functional as F

    import baselines.patchcore as ours

    def bilinear(parts: list[torch.Tensor]) -> torch.Tensor:
        size = parts[0].shape[-2:]
        return torch.cat([parts[0], *(F.interpolate(p, size=size, mode="bilinear")
                                      for p in parts[1:])], dim=1)

    monkeypatch.setattr(ours, "concat_layers", bilinear)
    gen = torch.Generator().manual_seed(1)
    train, test = torch.rand(4, 3, 64, 64, generator=gen), torch.rand(3, 3, 64, 64, generator=gen)
    mine = ours.PatchCore(backbone="efficientnet_lite2", coreset_ratio=1.0, reweight=True,
                          channels_last=False).fit(train)
    theirs = zoo.Patchcore(**SMALL, coreset_sampling_ratio=1.0, num_neighbors=9).fit(train)
    assert torch.allclose(mine.predict(test).scores, theirs.predict(test).scores, rtol=1e-4)
