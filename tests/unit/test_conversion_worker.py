"""The worker's job, run in-process against real local containers and the real converter: what it reports."""

from __future__ import annotations

import io
import json
from pathlib import Path

from openrr.conversions.job import JobSpec, Outcome, parse_report
from openrr.conversions.worker import Reporter, run_job
from openrr.storage.container import ContainerAccess
from tests.models import write_models


def _spec(root: Path, path: str, prefix: str = "") -> JobSpec:
    def access(name: str) -> ContainerAccess:
        return ContainerAccess(uri=(root / name).as_uri(), local_roots=[str(root)])

    return JobSpec(
        job="acct/job",
        input=access("in"),
        input_prefix=prefix,
        relative_input=path,
        output=access("out"),
        output_prefix="results/",
        output_filename="model.arrAsset",
        max_input_bytes=10**9,
    )


def _run(spec: JobSpec, work: Path) -> tuple[list[float], Outcome]:
    stream = io.BytesIO()
    outcome = run_job(spec, work, Reporter(stream))
    reports = [parse_report(line) for line in stream.getvalue().splitlines()]
    return [r for r in reports if isinstance(r, float)], outcome


def test_progress_rises_to_one_and_outputs_land_under_the_prefix(tmp_path: Path) -> None:
    write_models(tmp_path / "in" / "scenes")
    (tmp_path / "out").mkdir()
    progress, outcome = _run(_spec(tmp_path, "sphere.glb", prefix="scenes/"), tmp_path / "work")
    assert outcome.succeeded and outcome.error_code is None, outcome
    assert progress == sorted(progress) and progress[0] < 0.2 and progress[-1] == 1.0
    assert len(progress) >= 5, progress  # download, conversion steps and upload each report
    assert outcome.outputs == ["results/model.arrAsset", "results/model.info.json", "results/model.result.json"]
    assert json.loads((tmp_path / "out" / "results" / "model.result.json").read_text())[-1] == {"result": "succeeded"}


def test_a_missing_model_still_writes_its_result_file(tmp_path: Path) -> None:
    write_models(tmp_path / "in")
    (tmp_path / "out").mkdir()
    _, outcome = _run(_spec(tmp_path, "house.fbx"), tmp_path / "work")
    # ARR's code and sentence (the released SDK's test_failed_conversion_missing_asset), then what openrr saw.
    assert outcome.error_code == "InputContainerError"
    assert outcome.error_message is not None and outcome.error_message.startswith(
        "Could not find the asset file in the storage account. Please make sure all paths and names are correct "
        "and the file is uploaded to storage. "
    )
    assert "'house.fbx' does not exist in the container" in outcome.error_message
    assert outcome.error_message.endswith("4 blobs are there: cloud.ply, corrupt.glb, sphere.glb, textured_box.glb.")
    entries = json.loads((tmp_path / "out" / "results" / "model.result.json").read_text())
    assert entries[-1] == {"result": "failed"} and entries[-2]["error"] == "InputContainerError"
    assert outcome.outputs == ["results/model.result.json"]


def test_an_output_outside_the_roots_is_refused_and_said(tmp_path: Path) -> None:
    write_models(tmp_path / "in")
    spec = _spec(tmp_path, "sphere.glb")
    outside = ContainerAccess(uri=(tmp_path.parent / "elsewhere").as_uri(), local_roots=[str(tmp_path)])
    spec = JobSpec(**{**spec.__dict__, "output": outside})
    _, outcome = _run(spec, tmp_path / "work")
    assert outcome.error_code == "OutputContainerAccessDenied", outcome
    assert outcome.error_message is not None
    assert "is not a directory in this account's local storage" in outcome.error_message
