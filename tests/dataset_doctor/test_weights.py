"""Class weights: scikit-learn's 'balanced' for inverse, the formulas for sqrt and effective, the cap, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight
from typer.testing import CliRunner

from dataset_doctor.cli import app
from dataset_doctor.dataset.index import build_index
from dataset_doctor.errors import DoctorError
from dataset_doctor.weights import (
    class_weights_for_index,
    compute_class_weights,
    resolve_class_weights,
    write_weights_json,
)

COUNTS = np.array([900, 300, 60, 25])


def _instance_weighted_mean(weights: list[float], counts: np.ndarray) -> float:
    return float(np.dot(weights, counts) / counts.sum())


def test_inverse_equals_scikit_learn_balanced() -> None:
    labels = np.repeat(np.arange(len(COUNTS)), COUNTS)
    expected = compute_class_weight("balanced", classes=np.arange(len(COUNTS)), y=labels)
    result = compute_class_weights(COUNTS, ["a", "b", "c", "d"], method="inverse", max_ratio=None)
    np.testing.assert_allclose(result.weights, expected, rtol=1e-12)
    # and the textbook formula n_total / (n_classes * n_c)
    np.testing.assert_allclose(result.weights, COUNTS.sum() / (len(COUNTS) * COUNTS), rtol=1e-12)
    assert result.warnings == []


def test_sqrt_is_the_rescaled_square_root_of_inverse() -> None:
    result = compute_class_weights(COUNTS, method="sqrt", max_ratio=None)
    raw = np.sqrt(COUNTS.sum() / (len(COUNTS) * COUNTS))
    np.testing.assert_allclose(result.weights, raw / _instance_weighted_mean(raw, COUNTS), rtol=1e-12)
    assert _instance_weighted_mean(result.weights, COUNTS) == pytest.approx(1.0)


@pytest.mark.parametrize("beta", [0.9, 0.99, 0.9999])
def test_effective_number_follows_cui_et_al(beta: float) -> None:
    result = compute_class_weights(COUNTS, method="effective", beta=beta, max_ratio=None)
    raw = (1 - beta) / (1 - beta ** COUNTS.astype(float))  # 1 / effective number (1 - beta^n) / (1 - beta)
    np.testing.assert_allclose(result.weights, raw / _instance_weighted_mean(raw, COUNTS), rtol=1e-10)
    assert np.all(np.diff(result.weights) > 0)  # rarer classes weigh more


def test_cap_limits_the_ratio_and_warns() -> None:
    counts = np.array([10_000, 10])
    uncapped = compute_class_weights(counts, max_ratio=None)
    assert uncapped.weights[1] / uncapped.weights[0] == pytest.approx(1000)
    capped = compute_class_weights(counts, max_ratio=50)
    assert capped.weights[1] / capped.weights[0] == pytest.approx(50)
    assert _instance_weighted_mean(capped.weights, counts) == pytest.approx(1.0)
    assert any("capped" in warning for warning in capped.warnings)


def test_empty_class_gets_weight_one_and_a_warning() -> None:
    result = compute_class_weights([100, 0, 20], ["cat", "dog", "emu"])
    assert result.weights[1] == 1.0
    assert result.warnings == ["class 'dog' has no train instance: weight 1"]
    labels = np.repeat([0, 2], [100, 20])
    expected = compute_class_weight("balanced", classes=np.array([0, 2]), y=labels)
    np.testing.assert_allclose([result.weights[0], result.weights[2]], expected)


def test_weights_count_only_usable_train_boxes(make_dataset) -> None:
    data_yaml = make_dataset({
        "train": {"a.jpg": "0 0.5 0.5 0.2 0.2\n0 0.3 0.3 0.1 0.1\n1 0.5 0.5 0.2 0.2\n",
                  "b.jpg": "1 0.5 0.5 0.2 0.2\n1 0.5 0.5 0 0.2\n0 2 2 0.1 0.1\n"},  # degenerate, out of bounds
        "val": {"c.jpg": "1 0.5 0.5 0.2 0.2\n" * 5},
    })
    result = class_weights_for_index(build_index(data_yaml, progress=False))
    assert result.instances == [2, 2]
    assert result.weights == pytest.approx([1.0, 1.0])


def test_weights_refuse_broken_names(make_dataset) -> None:
    data_yaml = make_dataset({"train": {"a.jpg": "0 0.5 0.5 0.2 0.2\n"}, "val": {"b.jpg": ""}},
                             extra_yaml={"nc": 3})
    with pytest.raises(DoctorError, match="nc is 3 but 2 names"):
        class_weights_for_index(build_index(data_yaml, progress=False))


def test_cli_prints_table_and_writes_design_json(sample_yaml, tmp_path) -> None:
    out = tmp_path / "weights.json"
    result = CliRunner().invoke(app, ["weights", str(sample_yaml), "--method", "sqrt", "--json", str(out)])
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    assert list(document) == ["classes", "instances", "weights", "method"]
    assert document["method"] == "sqrt"
    assert document["classes"][0] == "zero" and len(document["weights"]) == 10
    expected = class_weights_for_index(build_index(sample_yaml, progress=False), method="sqrt")
    assert document["instances"] == expected.instances
    assert document["weights"] == pytest.approx(expected.weights)
    assert "zero" in result.output and f"{expected.weights[0]:.4f}" in result.output
    assert "with errors" in result.output  # the sample has error lines in train: they are not counted


def test_cli_warns_for_empty_classes(make_dataset) -> None:
    data_yaml = make_dataset({"train": {"a.jpg": "0 0.5 0.5 0.2 0.2\n"}, "val": {"b.jpg": ""}})
    result = CliRunner().invoke(app, ["weights", str(data_yaml)])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "'b' has no train instance" in result.output


@pytest.mark.parametrize("arguments", [["--beta", "1.5"], ["--method", "median"], ["--max-ratio", "0.5"]])
def test_cli_rejects_bad_options(sample_yaml, arguments: list[str]) -> None:
    result = CliRunner().invoke(app, ["weights", str(sample_yaml), *arguments])
    assert result.exit_code == 2


def test_cli_bad_yaml_is_one_line_error(tmp_path) -> None:
    result = CliRunner().invoke(app, ["weights", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2
    assert "missing.yaml" in result.output and "Traceback" not in result.output


def test_the_weights_json_it_writes_is_the_one_it_reads(make_dataset, tmp_path):
    """weights.py owns both ends of the file: `doctor weights --json` writes it, `train --class-weights` reads it."""
    index = build_index(make_dataset({"train": {"a.jpg": "0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1\n",
                                                "b.jpg": "0 0.5 0.5 0.2 0.2\n"},
                                      "val": {"c.jpg": "1 0.5 0.5 0.2 0.2\n"}}, names=["cat", "dog"]),
                        progress=False)
    written = class_weights_for_index(index, method="sqrt")
    write_weights_json(tmp_path / "weights.json", written)
    read = resolve_class_weights(str(tmp_path / "weights.json"), index, "inverse", None)
    assert read.classes == written.classes == ["cat", "dog"] and read.method == "file:weights.json"
    assert read.weights == pytest.approx(written.weights) and read.weights[1] > read.weights[0]
    with pytest.raises(DoctorError, match="not found"):
        resolve_class_weights(str(tmp_path / "missing.json"), index, "inverse", None)
