"""ImitatorConfig: every size and weight of the model, defaults = the official Imitator code.

Reference: bala1144/Imitator, ``imitator/models/nn_model.py`` and
``cfg/generalized_model/imitator_gen_ab_mbp_vel10.yaml`` (feature_dim 64, 4 heads, feed-forward
2 x 64, one decoder layer, 8 identity classes, max_seq_len 600, vocaset at 30 fps,
num_dec_layers 5 = 4 hidden Linear+LeakyReLU(0.01) + the final layer, velocity weight 10,
bilabial closed-frame weight 5). Saved as ``config.json`` beside ``model.safetensors``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ImitatorError

# The 8 VOCASET training subjects, in the order of the official one-hot style vector
# (``train_subjects`` in the official config): style i of a converted checkpoint is subject i.
VOCASET_TRAIN_SUBJECTS = [
    "FaceTalk_170728_03272_TA", "FaceTalk_170904_00128_TA", "FaceTalk_170725_00137_TA",
    "FaceTalk_170915_00223_TA", "FaceTalk_170811_03274_TA", "FaceTalk_170913_03279_TA",
    "FaceTalk_170904_03276_TA", "FaceTalk_170912_03278_TA",
]

POSITIONAL_ENCODINGS = ("imitator", "periodic", "none")
LONG_AUDIO_METHODS = ("rolling", "crossfade")


@dataclass
class ImitatorConfig:
    # audio encoder ------------------------------------------------------------------------------
    encoder: str = "wav2vec2"  # a name in core.model.encoders.ENCODERS ("wav2vec2", "logmel")
    # wav2vec2: {"source": folder or hub id, "config": Wav2Vec2Config dict, "normalize": bool}
    # logmel:   {"n_mels": 80, "dim": 128, "kernel": 5}
    encoder_options: dict[str, Any] = field(default_factory=dict)
    sample_rate: int = 16000  # what the encoder takes (input audio is resampled to it)
    fps: float = 30.0  # model frame rate; encoder features are resampled to it

    # viseme decoder: causal transformer decoder, FaceFormer/Imitator style --------------------
    feature_dim: int = 64  # d: audio feature map output, viseme features, style vectors
    num_heads: int = 4
    ff_dim: int = 128  # 2 * feature_dim in the reference
    num_layers: int = 1
    dropout: float = 0.1  # nn.TransformerDecoderLayer's default, and the PE dropout
    max_seq_len: int = 600  # training window (20 s at 30 fps); longer audio goes through windows
    # "imitator": the reference code's effective encoding: PositionalEncoding(max_len) added to a
    #   batch-first tensor adds position 0's code (0, 1, 0, 1, ...) to every frame;
    # "periodic": FaceFormer's periodic positional encoding with ``period``; "none".
    positional_encoding: str = "imitator"
    period: int = 30
    temporal_bias: bool = False  # FaceFormer's ALiBi-like periodic bias; Imitator: plain causal

    # style embedding: one-hot subject -> Linear(num_styles, d, bias=False) ---------------------
    styles: list[str] = field(default_factory=lambda: list(VOCASET_TRAIN_SUBJECTS))

    # motion decoder: motion_layers x (Linear(d, d) + LeakyReLU) + Linear(d, 3V), last zero-init -
    motion_layers: int = 4
    leaky_relu_slope: float = 0.01
    num_vertices: int = 5023  # FLAME; set from the head a model is trained on
    topology: str = ""  # topology hash of that head ("" = not recorded)

    # losses (core.model.losses) ----------------------------------------------------------------
    reconstruction_weight: float = 1.0
    velocity_weight: float = 10.0
    lip_contact_weight: float = 5.0  # official ``closed_frame_weight``
    lip_contact_sigma: float = 1.0  # Gaussian around each closure frame, in frames
    lip_contact_radius: int = 2  # frames either side that get weight
    # auxiliary phone loss (ours, training only): a linear head on the audio features classifies
    # each frame's phone (``phones``: its classes, empty = no head), cross-entropy x this weight
    phone_loss_weight: float = 0.0
    phones: list[str] = field(default_factory=list)

    # closure-aware decoding (core.model.closure): None, or the options of a fitted contact head
    # ({"centres": [upper, lower lip centre vertex], ...}); added by ``python -m core fit-closure``
    lip_closure: dict[str, Any] | None = None

    # audio longer than one window (core.model.generate) ------------------------------------------
    # "rolling": one continuous decode whose KV cache keeps frame 0 and the latest window - 1 frames;
    # "crossfade": windows of ``window`` frames overlapping by ``overlap``, restarted and crossfaded
    long_audio: str = "rolling"
    window: int = 600
    overlap: int = 60

    def __post_init__(self) -> None:
        self.validate()

    @property
    def num_styles(self) -> int:
        return len(self.styles)

    @property
    def vertex_dim(self) -> int:
        return 3 * self.num_vertices

    def validate(self) -> None:
        """One-line errors for values the model cannot be built with."""
        def bad(msg: str) -> ImitatorError:
            return ImitatorError(f"model config: {msg}")

        if self.feature_dim <= 0 or self.num_heads <= 0 or self.feature_dim % self.num_heads:
            raise bad(f"feature_dim {self.feature_dim} must be a positive multiple of num_heads "
                      f"{self.num_heads}")
        for name in ("ff_dim", "num_layers", "max_seq_len", "num_vertices", "sample_rate", "period"):
            if int(getattr(self, name)) <= 0:
                raise bad(f"{name} is {getattr(self, name)}; it must be positive")
        if not self.fps > 0:
            raise bad(f"fps is {self.fps}; it must be positive")
        if self.positional_encoding not in POSITIONAL_ENCODINGS:
            raise bad(f"positional_encoding {self.positional_encoding!r} is unknown; use one of "
                      f"{', '.join(POSITIONAL_ENCODINGS)}")
        if not self.styles or len(set(self.styles)) != len(self.styles):
            raise bad("styles must be a non-empty list of distinct names")
        if self.long_audio not in LONG_AUDIO_METHODS:
            raise bad(f"long_audio {self.long_audio!r} is unknown; use one of {', '.join(LONG_AUDIO_METHODS)}")
        if self.window < 2:
            raise bad(f"window {self.window} must be at least 2 frames")
        if not 0 <= self.overlap < self.window:
            raise bad(f"overlap {self.overlap} must be in [0, window {self.window})")
        if self.phone_loss_weight < 0 or (self.phone_loss_weight > 0 and not self.phones):
            raise bad(f"phone_loss_weight {self.phone_loss_weight} needs a non-negative weight and, "
                      f"when positive, the phone classes in phones")
        if not 0 <= self.dropout < 1:
            raise bad(f"dropout {self.dropout} must be in [0, 1)")

    # JSON round trip ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> "ImitatorConfig":
        if not isinstance(data, dict):
            raise ImitatorError(f"{where}: expected a JSON object of model settings")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ImitatorError(f"{where}: unknown setting(s) {', '.join(unknown)}; this model was "
                                f"written by a newer version, or the file was edited by hand")
        try:
            return cls(**data)
        except ImitatorError as e:
            raise ImitatorError(f"{where}: {e}") from None
        except TypeError as e:
            raise ImitatorError(f"{where}: {e}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_json(cls, text: str, where: str = "config") -> "ImitatorConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ImitatorError(f"{where}: not valid JSON ({e}); restore the file from the model "
                                f"download") from None
        return cls.from_dict(data, where)

    def save(self, path: Path) -> None:
        from ..fileio import atomic_write

        with atomic_write(Path(path)) as f:
            f.write(self.to_json().encode())

    @classmethod
    def load(cls, path: Path) -> "ImitatorConfig":
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise ImitatorError(f"{path}: model config not found; a model folder needs config.json "
                                f"beside model.safetensors") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ImitatorError(f"{path}: unreadable model config ({e})") from None
        return cls.from_json(text, str(path))

    def replace(self, **changes: Any) -> "ImitatorConfig":
        return dataclasses.replace(self, **changes)
