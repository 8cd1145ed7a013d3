"""A tiny corpus in the processed-VOCASET layout and a tiny model config, for trainer/metrics tests.

3 subjects x 2 utterances of 1 s: anna and bert train, carl_s1 val (an unseen subject), carl test.
Motion is low rank: vertices = template + w(t) @ basis with 4 active "ARKit" weights that follow
the audio's amplitude envelope; the arkit/ folder holds w, dataset.json the phone timings
(one M and one P per utterance).
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.audio import save_wav

ROOT = Path(__file__).resolve().parents[1]
SR = 16000
V = 50
FPS = 60.0
SUBJECTS = ("anna", "bert", "carl")
SENTENCES = ("s1", "s2")
PHONES = [["SIL", 0.0, 0.2], ["M", 0.2, 0.3], ["AA", 0.3, 0.6], ["P", 0.6, 0.65], ["SIL", 0.65, 1.0]]
TINY_MODEL = {"encoder": "logmel", "encoder_options": {"dim": 16, "n_mels": 20}, "feature_dim": 16,
              "ff_dim": 32, "window": 80, "overlap": 20}
COMMANDS = (".train", ".evaluate.metrics", ".generate_cli")


@pytest.fixture(autouse=True)
def one_thread():
    """Import into a test module: one torch thread per test, the same in and out of subprocesses
    (runs are compared bit for bit), and a second thread only waits for a core at this size."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_tiny_corpus(root: Path, *, phones: bool = True, seed: int = 0, compact: bool = False) -> np.ndarray:
    """Write the corpus into ``root``; returns the (52, V, 3) basis of its arkit/ weights.
    ``compact``: the compact layout (arkit/ + shape_keys.npy, no vertices_npy/)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for d in ("wav", "arkit") + (() if compact else ("vertices_npy",)):
        (root / d).mkdir(parents=True, exist_ok=True)
    basis = np.zeros((52, V, 3), np.float32)
    basis[:4] = rng.normal(size=(4, V, 3)) * 2e-3
    T = int(FPS)
    t = np.arange(T) / FPS
    ts = np.arange(SR) / SR
    templates, records = {}, []
    for k, subject in enumerate(SUBJECTS):
        templates[subject] = (rng.normal(size=(V, 3)) * 0.05).astype(np.float32)
        for j, sentence in enumerate(SENTENCES):
            key = f"{subject}_{sentence}"
            f = 2.0 + j
            w = np.zeros((T, 52), np.float32)
            for q in range(4):
                w[:, q] = 0.5 + 0.5 * np.sin(2 * np.pi * (f + q) * t + k)
            np.save(root / "arkit" / f"{key}.npy", w)
            verts = templates[subject][None] + np.einsum("tk,kvc->tvc", w, basis)
            if not compact:
                np.save(root / "vertices_npy" / f"{key}.npy", verts.reshape(T, -1).astype(np.float32))
            envelope = 0.5 + 0.5 * np.sin(2 * np.pi * f * ts + k)
            tone = 0.3 * envelope * np.sin(2 * np.pi * (150 + 40 * j) * ts)
            save_wav(root / "wav" / f"{key}.wav", tone.astype(np.float32), SR)
            record = {"name": key, "subject": subject, "sentence": sentence, "text": "mama papa"}
            if phones:
                record["phones"] = PHONES
            records.append(record)
    if compact:
        np.save(root / "shape_keys.npy", basis)
    with open(root / "templates.pkl", "wb") as fh:
        pickle.dump(templates, fh, protocol=4)
    info = {"fps": FPS, "units": "m", "utterances": records,
            "splits": {"train": {"subjects": ["anna", "bert"]}, "val": ["carl_s1"],
                       "test": {"subjects": ["carl"]}}}
    (root / "dataset.json").write_text(json.dumps(info))
    return basis


def tiny_corpus_and_model(tmp_path_factory) -> tuple[Path, Path]:
    """(corpus folder, model folder): the tiny corpus and an untrained tiny model on it whose last
    layer is not the zero init (which would hide every error)."""
    from core.model.config import ImitatorConfig
    from core.model.imitator import Imitator

    root = tmp_path_factory.mktemp("corpus")
    write_tiny_corpus(root)
    torch.manual_seed(0)
    model = Imitator(ImitatorConfig(**TINY_MODEL, styles=["anna", "bert"], num_vertices=V))
    torch.nn.init.normal_(model.motion_decoder.final.weight, std=1e-3)
    folder = tmp_path_factory.mktemp("model")
    model.save_pretrained(folder)
    return root, folder


def register_commands() -> None:
    """Make sure core.cli knows our subcommands (whether or not cli.py lists them yet)."""
    import core.cli as cli

    for name in COMMANDS:
        if name not in cli.COMMAND_MODULES:
            cli.COMMAND_MODULES.append(name)


def cli_main(argv: list[str]) -> int:
    import core.cli as cli

    register_commands()
    return cli.main([str(a) for a in argv])


def entry_script(folder: Path) -> Path:
    """A script that runs ``python -m core`` with our commands registered (for subprocesses)."""
    path = Path(folder) / "core_entry.py"
    path.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        f"sys.path.insert(0, {str(ROOT / 'tests')!r})\n"
        "from tiny_corpus import register_commands\n"
        "register_commands()\n"
        "import core.cli\n"
        "sys.exit(core.cli.main())\n")
    return path


PYTHON = sys.executable
