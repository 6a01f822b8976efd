"""The method keeps cadsd-bench's Detector contract (the same check the project runs on its own
methods)."""

from cadsd_example_plugin import PatchDistance

from leaderboard.testing import check_detector


def test_patch_distance_keeps_the_contract() -> None:
    check_detector(PatchDistance)
