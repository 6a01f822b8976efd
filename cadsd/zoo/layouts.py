"""The published layouts of MVTec AD, BTAD, MVTec LOCO AD and an AITEX folder, as indexers.

Per category folder:

* MVTec AD: ``train/good``, ``test/<defect>``, ``ground_truth/<defect>/<stem>_mask.png``;
* BTAD: ``train/ok``, ``test/ok``, ``test/ko``, ``ground_truth/ko/<stem>.<any image suffix>``;
* MVTec LOCO AD: ``train/good``, ``validation/good``, ``test/good``,
  ``test/logical_anomalies``, ``test/structural_anomalies`` and
  ``ground_truth/<type>/<stem>/<k>.png`` (one or more masks per image, one per defect region,
  whose grey value names the defect in the category's ``defects_config.json``, which is
  required: :mod:`cadsd.zoo.loco`). The validation images are normal images meant for model
  selection; a fixed benchmark does not select, so they are not used (neither trained on nor
  scored);
* AITEX and any other folder in MVTec AD's layout (a generic import): ``train/good``,
  ``test/<defect>`` and, optionally, ``ground_truth/<defect>/<stem>_mask.png``: when a
  ``ground_truth/`` folder exists, every anomalous image needs its mask (masks are never
  dropped in part).

A mask without its image, an anomalous image without its mask (where the benchmark has masks,
or the folder has a ``ground_truth/``), masks in a place the layout does not read, or an empty
split is an error naming the file.
"""

from __future__ import annotations

from pathlib import Path

from cadsd.errors import LayoutError
from cadsd.zoo.base import Sample, images_in


def _rel(path: Path, folder: Path) -> str:
    return path.relative_to(folder).as_posix()


def _check_orphans(masks: set[Path], used: set[Path], where: Path) -> None:
    orphans = sorted(masks - used)
    if orphans:
        raise LayoutError(f"{where}: {len(orphans)} mask(s) without an image, e.g. "
                          f"{orphans[0]}; remove them or restore their images")


def _mvtec_like(folder: Path, normal: str, group: str, masks_required: bool,
                mask_name: str = "{stem}_mask.png") -> list[Sample]:
    """train/<normal>, test/<defect>, ground_truth/<defect>/<mask_name>."""
    out = [Sample(p, _rel(p, folder), "train", "good", "normal", "normal")
           for p in images_in(folder / "train" / normal)]
    test = folder / "test"
    if not test.is_dir():
        raise LayoutError(f"{folder} has no test/ folder")
    gt = folder / "ground_truth"
    all_masks = {p for d in gt.iterdir() if d.is_dir() for p in images_in(d)} if gt.is_dir() else set()
    if gt.is_dir():
        deeper = sorted(p for d in gt.iterdir() if d.is_dir() for sub in d.iterdir()
                        if sub.is_dir() for p in images_in(sub))
        if deeper:  # e.g. LOCO's ground_truth/<type>/<id>/000.png: never silently ignored
            raise LayoutError(f"{gt}: masks in folders this layout does not read, e.g. "
                              f"{deeper[0]}; ground_truth/<defect>/<stem>_mask.png expected")
        masks_required = True  # a mask folder exists: no anomalous image may lack its mask
    used: set[Path] = set()
    for sub in sorted(p for p in test.iterdir() if p.is_dir()):
        defect = "good" if sub.name == normal else sub.name
        for p in images_in(sub):
            if defect == "good":
                out.append(Sample(p, _rel(p, folder), "test", "good", "normal", "normal"))
                continue
            mask = gt / sub.name / mask_name.format(stem=p.stem)
            if not mask.is_file():
                hits = [m for m in images_in(gt / sub.name) if m.stem == p.stem]
                mask = hits[0] if hits else mask
            if not mask.is_file() and masks_required:
                if not gt.is_dir():
                    raise LayoutError(f"{folder} has no ground_truth/ folder: every anomalous "
                                      f"test image needs its mask (e.g. {p.name})")
                raise LayoutError(f"{p} has no mask (expected {mask})")
            masks = (mask,) if mask.is_file() else ()
            used.update(masks)
            out.append(Sample(p, _rel(p, folder), "test", defect, "anomaly", group, masks))
    _check_orphans(all_masks, used, gt)
    return out


def index_mvtec_ad(folder: Path, category: str) -> list[Sample]:
    return _mvtec_like(folder, "good", "local", masks_required=True)


def index_aitex(folder: Path, category: str) -> list[Sample]:
    return _mvtec_like(folder, "good", "local", masks_required=False)


def index_btad(folder: Path, category: str) -> list[Sample]:
    return _mvtec_like(folder, "ok", "local", masks_required=True, mask_name="{stem}.png")


def index_mvtec_loco(folder: Path, category: str) -> list[Sample]:
    from cadsd.zoo.loco import read_defects_config

    read_defects_config(folder)  # its masks mean nothing without it: checked before any work
    out = [Sample(p, _rel(p, folder), "train", "good", "normal", "normal")
           for p in images_in(folder / "train" / "good")]
    gt = folder / "ground_truth"
    all_masks = ({p for t in gt.iterdir() if t.is_dir() for d in t.iterdir() if d.is_dir()
                  for p in images_in(d)} if gt.is_dir() else set())
    used: set[Path] = set()
    for kind, group in (("good", "normal"), ("logical_anomalies", "logical"),
                        ("structural_anomalies", "structural")):
        for p in images_in(folder / "test" / kind):
            if kind == "good":
                out.append(Sample(p, _rel(p, folder), "test", "good", "normal", "normal"))
                continue
            masks = tuple(images_in(gt / kind / p.stem))
            if not masks:
                raise LayoutError(f"{p} has no masks (expected {gt / kind / p.stem}/000.png)")
            used.update(masks)
            out.append(Sample(p, _rel(p, folder), "test", kind, "anomaly", group, masks))
    _check_orphans(all_masks, used, gt)
    return out
