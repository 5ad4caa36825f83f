from appliance.pipeline import fit_formation
from core.records import Build

IMAGE = Build("r/a:v1", "image")  # no Procfile: the image's CMD runs as cmd
PROCS = Build("r/a:v2", "dockerfile", procfile={"web": "serve", "worker": "work"})


def test_first_deploy_gets_the_builds_default() -> None:
    assert fit_formation(IMAGE, {}) == {"cmd": 1}
    assert fit_formation(PROCS, {}) == {"web": 1}


def test_a_scaled_formation_is_kept_while_the_build_has_its_types() -> None:
    assert fit_formation(PROCS, {"web": 3, "worker": 0}) == {"web": 3, "worker": 0}
    assert fit_formation(PROCS, {"web": 0}) == {"web": 0}  # scaled to zero on purpose
    assert fit_formation(IMAGE, {"cmd": 2}) == {"cmd": 2}


def test_a_formation_the_build_cannot_run_falls_back_to_its_default() -> None:
    assert fit_formation(IMAGE, {"web": 2}) == {"cmd": 1}  # rollback from a Procfile build to a CMD image
    assert fit_formation(PROCS, {"cmd": 1}) == {"web": 1}
