"""The README's "Use a trained model" and "Python API" examples run as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def section_blocks(title: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced block in the README section called ``title``."""
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end > 0 else None]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)


def run_blocks(blocks: list[tuple[str, str]], cwd: Path) -> list[str]:
    """Run README blocks in ``cwd`` (bash with -euo pipefail, python with -c); their
    standard outputs."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    outputs = []
    for lang, code in blocks:
        cmd = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [
            sys.executable, "-c", code]
        done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, f"{lang} block failed:\n{code}\n{done.stderr[-3000:]}"
        outputs.append(done.stdout)
    return outputs


@pytest.mark.slow
def test_use_a_trained_model_examples(tmp_path):
    blocks = section_blocks("Use a trained model")
    assert [lang for lang, _ in blocks] == ["bash", "python", "python"]
    run_blocks(blocks, tmp_path)
    assert (tmp_path / "predictions.json").stat().st_size > 0
    assert (tmp_path / "exported" / "demo" / "model.tflite").exists()
    # the Python API section, on the run and export the section above made
    api = section_blocks("Python API")
    assert [lang for lang, _ in api] == ["python", "python", "python"]
    run_blocks(api, tmp_path)


def test_python_api_examples(tmp_path, tiny_models, tiny_demo_dir):
    """The "Python API" blocks as written, on the session's tiny run and export laid out
    as the "Use a trained model" commands leave them (runs/demo, exported/demo, demo/)."""
    run, out = tiny_models
    for link, target in (("runs/demo", run), ("exported/demo", out), ("demo", tiny_demo_dir)):
        (tmp_path / link).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / link).symlink_to(target, target_is_directory=True)
    blocks = section_blocks("Python API")
    assert [lang for lang, _ in blocks] == ["python", "python", "python"]
    outputs = run_blocks(blocks, tmp_path)
    assert "(1, 12)" in outputs[2]  # the tiny demo set's 12 classes


def test_set_up_tags_any_audio_file(tmp_path, tiny_models):
    """The "Set up" section's predict and Python lines, as written, on a stereo 48 kHz
    FLAC, with the session's tiny run standing in for the trained runs/first."""
    import numpy as np
    import soundfile as sf

    blocks = section_blocks("Set up")
    assert [lang for lang, _ in blocks][:3] == ["bash", "bash", "python"]
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "first").symlink_to(tiny_models[0], target_is_directory=True)
    t = np.arange(48000 * 3) / 48000
    stereo = 0.3 * np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)], 1)
    sf.write(tmp_path / "my_recording.flac", stereo, 48000)
    predicted, _ = run_blocks(blocks[1:3], tmp_path)
    assert predicted.splitlines()[0].startswith("fname,") and "my_recording" in predicted
