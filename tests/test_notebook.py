from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def test_quickstart_notebook_runs_headless_on_a_tiny_budget(tmp_path, monkeypatch):
    monkeypatch.setenv("QUICKSTART_EPOCHS", "3")
    monkeypatch.setenv("QUICKSTART_LIMIT_BATCHES", "2")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = "".join(out.get("text", "") for cell in notebook.cells for out in cell.get("outputs", []))
    assert "best val/acc1" in outputs and "val/acc1" in outputs
    assert list((tmp_path / "checkpoints" / "notebook").rglob("last.ckpt"))
