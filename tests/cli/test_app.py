"""The CLI shell: commands listed, user errors as one line with exit code 2, no traceback."""

from __future__ import annotations

from typer.testing import CliRunner

from dataset_doctor.cli import app

runner = CliRunner()


def test_help_lists_the_working_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "sample" in result.output


def test_sample_command_writes_a_dataset(tmp_path):
    result = runner.invoke(app, ["sample", str(tmp_path / "ds"), "--train-images", "50", "--val-images", "20"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ds/data.yaml").exists() and (tmp_path / "ds/manifest.json").exists()
    assert len(list((tmp_path / "ds/images/train").iterdir())) >= 50


def test_user_error_is_one_line_exit_2_without_traceback(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy/file").write_text("x")
    result = runner.invoke(app, ["sample", str(tmp_path / "busy")])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(error_lines) == 1 and "not empty" in error_lines[0] and "busy" in error_lines[0]


def test_bad_usage_is_exit_2():
    assert runner.invoke(app, ["sample"]).exit_code == 2
    assert runner.invoke(app, ["no-such-command"]).exit_code == 2


def test_command_help_paragraphs_are_not_broken_at_source_line_ends():
    """Docstrings wrap at 120 columns in the source; --help must reflow them to the terminal, not keep those breaks."""
    for command in app.registered_commands:
        name = command.name or command.callback.__name__
        assert command.help, f"doctor {name} has no help"
        assert all("\n" not in paragraph for paragraph in command.help.split("\n\n")), name
        result = runner.invoke(app, [name, "--help"], terminal_width=200)
        assert result.exit_code == 0
        # At 200 columns, no line of the description may stop short while its paragraph goes on.
        description = result.output.split("Usage:")[1].split("╭")[0]
        for paragraph in description.strip().split("\n\n")[1:]:
            lines = [line.strip() for line in paragraph.strip().splitlines()]
            assert all(len(line) > 150 for line in lines[:-1]), (name, lines)


def test_starting_the_cli_does_not_load_heavy_modules_only_some_commands_need():
    """Every command pays the CLI's import time: SciPy's optimiser (rebalance's planner, ~0.5 s) and torch
    (training) load when their command runs, not when the CLI starts."""
    import subprocess
    import sys

    code = ("import sys, dataset_doctor.cli; "
            "print(sorted(m for m in ('scipy.optimize', 'torch') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
