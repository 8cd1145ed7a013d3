"""Audio encoders, pluggable by name: 16 kHz mono samples -> (B, T, D) features at the model fps.

* ``wav2vec2``: the reference encoder, ``transformers.Wav2Vec2Model`` from a local folder or hub id.
  As in the official code (bala1144/Imitator ``imitator/models/wav2vec.py``, after FaceFormer's
  ``wav2vec.py``), the CNN features (50 Hz) are linearly interpolated to the model fps
  (``F.interpolate(..., align_corners=True)``) *before* the feature projection and the transformer,
  so the transformer runs at the model fps. Input is normalised per utterance like
  ``Wav2Vec2Processor`` (zero mean, unit variance).
* ``logmel``: built in, nothing to download, fast on CPU: 80 log-mel bands + log energy per 10 ms,
  a per-frame LayerNorm, two 1-D convolutions (GELU), then an average over each model frame's
  time span (anchored at t / fps, so a chunk of audio gives the same frames as the whole file),
  then optional residual dilated convolutions at the model fps (``context_dilations``): the
  context wav2vec2's transformer gives the reference, here +-sum(dilations) frames (0.5 s for
  1, 2, 4, 8 at 30 fps), enough to see a closure coming (lips lead the sound by up to 120 ms).
  Optional ``phone_branch``: a second stack of the same kind on the same log-mel frames whose
  linear head scores each frame's phone (``PhoneBranch``); its logits are appended to the features
  (the model turns them into posteriors for its feature map and trains them by cross-entropy).

Every encoder: ``forward(audio (B, N) float at 16 kHz, num_frames) -> (B, num_frames, dim)``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ImitatorError

ENCODER_RATE = 16000
MIN_SAMPLES = 400  # wav2vec2's first convolution window; shorter audio is zero-padded


def prepare_audio(samples: np.ndarray, sample_rate: int, target_rate: int = ENCODER_RATE) -> np.ndarray:
    """Any channel layout and rate -> mono float32 at ``target_rate`` (channels averaged).

    (N,) and (N, C) are read as samples x channels; a (C, N) array with C < N is transposed.
    """
    from ..audio import resample_audio, to_mono

    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2 and samples.shape[0] < samples.shape[1] and samples.shape[0] <= 16:
        samples = samples.T
    if samples.ndim not in (1, 2):
        raise ImitatorError(f"audio array has shape {samples.shape}; expected (samples,) or "
                            f"(samples, channels)")
    mono = to_mono(samples)
    if not np.all(np.isfinite(mono)):
        raise ImitatorError("audio holds NaN or Inf samples; re-export the audio")
    return resample_audio(mono, int(sample_rate), int(target_rate))


def num_frames_for(num_samples: int, sample_rate: int, fps: float) -> int:
    """Model frames covering ``num_samples``: floor(duration * fps), at least 1."""
    return max(1, int(math.floor(num_samples * fps / sample_rate + 1e-6)))


def interpolate_frames(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B, T_in, C) -> (B, num_frames, C), linear with aligned corners (the reference's resampling)."""
    if x.shape[1] == num_frames:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, num_frames, -1)
    return F.interpolate(x.transpose(1, 2), size=num_frames, mode="linear",
                         align_corners=True).transpose(1, 2)


class AudioEncoder(nn.Module):
    """Base class: subclasses set ``name`` and ``dim`` and implement ``forward``."""

    name: ClassVar[str] = ""
    dim: int

    def __init__(self, options: dict[str, Any], fps: float):
        super().__init__()
        self.options = dict(options)
        self.fps = float(fps)

    def forward(self, audio: torch.Tensor, num_frames: int) -> torch.Tensor:  # (B, N) -> (B, T, D)
        raise NotImplementedError

    @property
    def frame_step(self) -> int:
        """Model frames after which the encoder's own input grid repeats: audio cut at a multiple
        of this many frames gives features equal to the whole file's (1: no exact grid)."""
        return 1

    def export_options(self) -> dict[str, Any]:
        """Options that rebuild this encoder without any download (saved in config.json)."""
        return dict(self.options)


# --- wav2vec 2.0 ---------------------------------------------------------------------------------
class Wav2Vec2Encoder(AudioEncoder):
    """``transformers.Wav2Vec2Model``; features interpolated to the model fps before its transformer."""

    name = "wav2vec2"

    def __init__(self, options: dict[str, Any], fps: float, pretrained: bool = True):
        super().__init__(options, fps)
        from transformers import Wav2Vec2Config, Wav2Vec2Model

        source = options.get("source")
        config = options.get("config")
        if pretrained and source:
            self.model = _load_wav2vec2(str(source))
        elif config is not None:
            self.model = Wav2Vec2Model(Wav2Vec2Config.from_dict(dict(config)))
        elif source:
            raise ImitatorError(f"wav2vec2 encoder: the model config holds no wav2vec2 settings and "
                                f"weights from {source!r} were not requested; re-save the model")
        else:
            raise ImitatorError("wav2vec2 encoder needs encoder_options['source'] (a local folder "
                                "or hub id such as facebook/wav2vec2-base-960h)")
        self.options["config"] = _plain(self.model.config.to_dict())
        # the reference freezes the CNN feature extractor (feature_extractor._freeze_parameters())
        if options.get("freeze_feature_extractor", True):
            for p in self.model.feature_extractor.parameters():
                p.requires_grad = False
        self.normalize = bool(options.get("normalize", True))
        self.dim = int(self.model.config.hidden_size)

    def forward(self, audio: torch.Tensor, num_frames: int) -> torch.Tensor:
        if audio.shape[1] < MIN_SAMPLES:
            audio = F.pad(audio, (0, MIN_SAMPLES - audio.shape[1]))
        if self.normalize:  # Wav2Vec2FeatureExtractor(do_normalize=True)
            audio = (audio - audio.mean(1, keepdim=True)) / torch.sqrt(audio.var(1, keepdim=True,
                                                                                 unbiased=False) + 1e-7)
        m = self.model
        x = m.feature_extractor(audio).transpose(1, 2)  # (B, T50, 512)
        x = interpolate_frames(x, num_frames)  # (B, T, 512), the reference's 50 -> 30 fps
        x, _ = m.feature_projection(x)  # (B, T, 768)
        x = m._mask_hidden_states(x)  # SpecAugment in training, as the reference does
        return m.encoder(x).last_hidden_state  # (B, T, 768)


def _plain(value: Any) -> Any:
    """JSON-safe copy of a transformers config dict."""
    import json

    return json.loads(json.dumps(value, default=str))


def _load_wav2vec2(source: str):
    from transformers import Wav2Vec2Model

    path = Path(source).expanduser()
    looks_local = path.exists() or source.startswith((".", "/", "~")) or source.count("/") > 1
    if looks_local and not path.is_dir():
        raise ImitatorError(f"{source}: wav2vec2 folder not found; download facebook/wav2vec2-base-960h "
                            f"(config.json + weights) into a folder and pass that folder")
    try:
        return Wav2Vec2Model.from_pretrained(str(path) if looks_local else source,
                                             local_files_only=looks_local)
    except (OSError, ValueError, EnvironmentError) as e:
        reason = " ".join(str(e).split())[:200]
        raise ImitatorError(f"{source}: could not load wav2vec2 weights ({reason}); pass a local "
                            f"folder holding config.json and the weights, or connect to the network "
                            f"once so the hub id can be cached") from None


# --- log-mel -------------------------------------------------------------------------------------
class LogMelEncoder(AudioEncoder):
    """Log-mel bands (10 ms hop) -> LayerNorm -> 2 x (Conv1d + GELU) -> average per model frame
    -> residual dilated convolutions over neighbouring frames (none unless ``context_dilations``)."""

    name = "logmel"

    def __init__(self, options: dict[str, Any], fps: float, pretrained: bool = True):
        opts = {"n_mels": 80, "n_fft": 400, "hop": 160, "dim": 128, "kernel": 5, "context_dilations": [],
                **options}
        opts["context_dilations"] = [int(d) for d in opts["context_dilations"]]
        super().__init__(opts, fps)
        import librosa

        n_mels, n_fft, dim, kernel = (int(opts[k]) for k in ("n_mels", "n_fft", "dim", "kernel"))
        self.hop = int(opts["hop"])
        for key, value, top in (("n_mels", n_mels, 256), ("n_fft", n_fft, 4096), ("hop", self.hop, n_fft),
                                ("dim", dim, 4096), ("kernel", kernel, 31)):
            if not 1 <= value <= top:  # before librosa and torch allocate anything of that size
                raise ImitatorError(f"model config: encoder option {key} = {value} is out of range; "
                                    f"give 1..{top} (the shipped logmel: n_mels 80, n_fft 400, hop 160)")
        self.n_fft = n_fft
        self.dim = dim
        mel = librosa.filters.mel(sr=ENCODER_RATE, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=8000.0)
        self.register_buffer("mel_basis", torch.from_numpy(mel).float(), persistent=False)  # (M, F)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.norm = nn.LayerNorm(n_mels + 1)
        self.conv1 = nn.Conv1d(n_mels + 1, dim, kernel, padding=kernel // 2)
        self.conv2 = nn.Conv1d(dim, dim, kernel, padding=kernel // 2)
        self.context = nn.ModuleList(ContextBlock(dim, d) for d in opts["context_dilations"])
        self.phone_branch = None
        if opts.get("phone_branch") is not None:
            branch = {"dim": dim, "kernel": kernel, "context_dilations": list(opts["context_dilations"]),
                      **opts["phone_branch"]}
            self.phone_branch = PhoneBranch(n_mels + 1, int(branch["dim"]), int(branch["kernel"]),
                                            [int(d) for d in branch["context_dilations"]], int(branch["classes"]))
            self.options["phone_branch"] = {**branch, "context_dilations": self.phone_branch.dilations}
            self.dim = dim + self.phone_classes

    @property
    def phone_classes(self) -> int:
        """Phone logits at the end of every feature vector (0 without a phone branch)."""
        return 0 if self.phone_branch is None else self.phone_branch.head.out_features

    @property
    def context_frames(self) -> int:
        """Model frames either side that a frame's features depend on (beyond its own audio)."""
        own = sum(block.dilation for block in self.context)
        return own if self.phone_branch is None else max(own, sum(self.phone_branch.dilations))

    @property
    def frame_step(self) -> int:
        samples = ENCODER_RATE / self.fps  # per model frame; the mel grid is every `hop` samples
        for k in range(1, 101):
            if abs(k * samples / self.hop - round(k * samples / self.hop)) < 1e-6:
                return k  # 3 at 30 or 60 fps, 1 at 25 fps
        return 1

    @property
    def rate(self) -> float:
        return ENCODER_RATE / self.hop  # 100 frames/s

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, K, n_mels + 1) log-mel bands and log energy, frame k centred at k * hop."""
        return self.log_mel_from_power(self.power_spectrogram(audio))

    def power_spectrogram(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, F, K) STFT power, F = n_fft / 2 + 1 bins from 0 to 8 kHz."""
        if audio.shape[1] < self.n_fft:
            audio = F.pad(audio, (0, self.n_fft - audio.shape[1]))
        spec = torch.stft(audio, self.n_fft, self.hop, window=self.window, center=True,
                          return_complex=True)
        return torch.view_as_real(spec).square().sum(-1)

    def log_mel_from_power(self, spec: torch.Tensor) -> torch.Tensor:
        """(B, F, K) power -> (B, K, n_mels + 1) log-mel bands and log energy."""
        mel = self.mel_basis @ spec  # (B, M, K)
        energy = spec.sum(1, keepdim=True)  # (B, 1, K)
        return torch.log(torch.cat([mel, energy], 1) + 1e-6).transpose(1, 2)  # (B, K, M+1)

    @property
    def log_mel_dim(self) -> int:
        return self.norm.normalized_shape[0]  # n_mels + 1

    def log_mel_frames(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, K, n_mels + 1), audio shorter than one FFT window zero-padded."""
        if audio.shape[1] < self.n_fft:
            audio = F.pad(audio, (0, self.n_fft - audio.shape[1]))
        return self.log_mel(audio)

    def forward(self, audio: torch.Tensor, num_frames: int) -> torch.Tensor:
        return self.from_log_mel(self.log_mel_frames(audio), num_frames)

    def from_log_mel(self, mel: torch.Tensor, num_frames: int) -> torch.Tensor:
        """(B, K, n_mels + 1) log-mel frames (``log_mel_frames``) -> (B, num_frames, dim) features."""
        x = conv_stack(self, mel, self.rate, self.fps, num_frames)  # (B, T, dim)
        if self.phone_branch is not None:
            x = torch.cat([x, self.phone_branch(mel, self.rate, self.fps, num_frames)], -1)
        return x


class PhoneBranch(nn.Module):
    """Log-mel frames -> per-frame phone logits: LayerNorm, 2 x (Conv1d + GELU), the average per
    model frame, residual dilated convolutions, a linear head (the encoder's own stack, apart)."""

    def __init__(self, n_in: int, dim: int, kernel: int, dilations: list[int], classes: int):
        super().__init__()
        if not (1 <= dim <= 4096 and 1 <= kernel <= 31 and 2 <= classes <= 1024):
            raise ImitatorError(f"model config: phone_branch dim {dim}, kernel {kernel}, classes {classes} "
                                f"out of range; give dim 1..4096, kernel 1..31, classes 2..1024")
        self.dilations = list(dilations)
        self.norm = nn.LayerNorm(n_in)
        self.conv1 = nn.Conv1d(n_in, dim, kernel, padding=kernel // 2)
        self.conv2 = nn.Conv1d(dim, dim, kernel, padding=kernel // 2)
        self.context = nn.ModuleList(ContextBlock(dim, d) for d in self.dilations)
        self.head = nn.Linear(dim, classes)

    def forward(self, mel: torch.Tensor, rate: float, fps: float, num_frames: int) -> torch.Tensor:
        return self.head(conv_stack(self, mel, rate, fps, num_frames))  # (B, T, classes)


def conv_stack(stack: nn.Module, mel: torch.Tensor, rate: float, fps: float, num_frames: int) -> torch.Tensor:
    """The log-mel stack of ``stack`` (its norm, conv1, conv2 and context blocks): (B, K, M+1)
    frames at ``rate`` -> LayerNorm -> 2 x (Conv1d + GELU) -> average per model frame -> context."""
    x = stack.norm(mel).transpose(1, 2)  # (B, M+1, K)
    x = F.gelu(stack.conv2(F.gelu(stack.conv1(x))))  # (B, dim, K)
    x = average_per_frame(x.transpose(1, 2), rate, fps, num_frames)  # (B, T, dim)
    for block in stack.context:
        x = block(x)
    return x


class ContextBlock(nn.Module):
    """x + GELU(Conv1d(LayerNorm(x))), kernel 3 with dilation d: frame t sees frames t-d, t, t+d."""

    def __init__(self, dim: int, dilation: int):
        super().__init__()
        self.dilation = int(dilation)
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Conv1d(dim, dim, 3, padding=self.dilation, dilation=self.dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, dim) -> (B, T, dim)
        return x + F.gelu(self.conv(self.norm(x).transpose(1, 2))).transpose(1, 2)


def average_per_frame(x: torch.Tensor, rate_in: float, fps: float, num_frames: int) -> torch.Tensor:
    """(B, K, C) at ``rate_in`` -> (B, num_frames, C): frame t averages the inputs whose times lie
    in [(t - 0.5) / fps, (t + 0.5) / fps) (at least the nearest one); anchored at time 0."""
    K = x.shape[1]
    t = torch.arange(num_frames, dtype=torch.float64)
    lo = torch.ceil((t - 0.5) * rate_in / fps - 1e-9).clamp(0, K - 1).long()
    hi = torch.ceil((t + 0.5) * rate_in / fps - 1e-9).clamp(0, K).long()
    hi = torch.maximum(hi, lo + 1)
    csum = F.pad(x.cumsum(1), (0, 0, 1, 0))  # (B, K+1, C)
    total = csum[:, hi] - csum[:, lo]
    return total / (hi - lo).to(x.dtype)[None, :, None]


ENCODERS: dict[str, type[AudioEncoder]] = {
    Wav2Vec2Encoder.name: Wav2Vec2Encoder,
    LogMelEncoder.name: LogMelEncoder,
}


def build_encoder(name: str, options: dict[str, Any], fps: float, pretrained: bool = True) -> AudioEncoder:
    """The encoder called ``name``; ``pretrained=False`` builds it from saved options only."""
    cls = ENCODERS.get(name)
    if cls is None:
        raise ImitatorError(f"unknown audio encoder {name!r}; known encoders: {', '.join(ENCODERS)}")
    return cls(options, fps, pretrained=pretrained)
