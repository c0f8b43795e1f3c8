"""A model's own false accepts, mined from negative streams and fed back into its dataset.

The main job's second round (`trainer.recipe`): every hit of a model on streams that never
hold the wake word is a false accept by construction, so all of them are confirmed as hard
negatives at once (no review queue). The session is the same resumable JSON `hark mine`
writes, so an interrupted round continues where it stopped and a finished one is not redone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .graphs import open_graphs
from .miner import Miner, create, scan_settings
from .queue import review
from .session import CONFIRMED, load_session, model_hash, running

MINED_LABEL = "hard_negative"


def mine_false_accepts(session_path: Path, model_dir: Path, streams: list[Path], dataset: Path, *,
                       threshold: float, progress: bool = True) -> dict[str, Any]:
    """Scan `streams` (negative audio only) with the model in `model_dir`, at `threshold` on
    the smoothed score, and copy every hit into `dataset`/hard_negative/mined/.

    Resumes `session_path` when it exists (for the same model and settings). Returns the
    session's counts plus "confirmed", the hits now in the dataset.
    """
    session_path = Path(session_path)
    graphs = open_graphs(model_dir)
    if session_path.is_file():
        session = load_session(session_path)
    else:
        settings = scan_settings(graphs.manifest, threshold=threshold)
        digest = model_hash(Path(model_dir), [graphs.manifest.files["features"], graphs.model_file])
        session = create(session_path, model_dir=Path(model_dir), paths=list(streams),
                         settings=settings, dataset=Path(dataset), shard=(1, 1),
                         model={"hash": digest, "wake_word": graphs.manifest.wake_word,
                                "graph": graphs.model_file})
    from .scan import ScanSettings
    settings = ScanSettings.from_dict(session.data["settings"], str(session_path))
    if not session.complete:
        with running(session_path):
            Miner(session, graphs, settings, progress=progress).run()
        session = load_session(session_path)
    todo = [str(h["id"]) for h in session.hits if h["status"] != CONFIRMED]
    if todo:
        review(session_path, tuple(todo), status=CONFIRMED, label=MINED_LABEL, dataset=Path(dataset))
        session = load_session(session_path)
    counts = session.counts()
    return {**counts, "confirmed": counts[f"hits_{CONFIRMED}"], "threshold": settings.threshold}
