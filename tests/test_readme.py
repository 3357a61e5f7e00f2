"""The README's "Use a trained model" examples run as written."""

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


@pytest.mark.slow
def test_use_a_trained_model_examples(tmp_path):
    blocks = section_blocks("Use a trained model")
    assert [lang for lang, _ in blocks] == ["bash", "python", "python"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for lang, code in blocks:
        cmd = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [
            sys.executable, "-c", code]
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, f"{lang} block failed:\n{code}\n{done.stderr[-3000:]}"
    assert (tmp_path / "predictions.json").stat().st_size > 0
    assert (tmp_path / "exported" / "demo" / "model.tflite").exists()
