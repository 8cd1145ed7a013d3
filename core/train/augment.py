"""Audio augmentation in the trainer: the channels, rooms and speakers that real recordings have and
TTS does not, drawn afresh for every sequence of every step, on the batch, in torch.

On the waveform (B, N):
    gain and clipping      -12..+6 dB, then hard clipping of the loudest 0.1-2 % of samples
    reverberation          a synthetic room impulse response (exponentially decaying noise,
                           RT60 0.15-0.8 s, direct sound first), FFT convolution
    noise                  white or pink noise at 5-40 dB SNR
    lossy codec            G.711 mu-law (the 8-bit telephone codec): companding + quantization
On the STFT power (B, F, K), before the mel filters (cheap, and what a linear filter does):
    telephone band         300-3400 Hz (an 8 kHz phone line), or an 8 kHz round trip (< 4 kHz)
    microphone EQ / tilt   a smooth random gain curve over frequency, +-9 dB, and a tilt
    vocal-tract length     the frequency axis warped by 0.88-1.12 (VTLP, Jaitly & Hinton 2013)
Speed perturbation is not here: the corpus renders voices at many rates.
Every random number comes from ``torch.Generator`` seeded by the caller (the step's seed), so a
resumed run draws the same augmentations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["AugmentConfig", "Augmenter"]


@dataclass(frozen=True)
class AugmentConfig:
    """Probability of each augmentation per sequence (0 switches it off) and its ranges."""

    clean: float = 0.2  # share of sequences left as they are
    gain: float = 0.5
    clipping: float = 0.1
    reverb: float = 0.3
    noise: float = 0.5
    snr_db: tuple[float, float] = (5.0, 40.0)
    telephone: float = 0.15
    narrowband: float = 0.15  # 8 kHz round trip
    codec: float = 0.15  # G.711 mu-law
    eq: float = 0.5
    vtlp: float = 0.5
    warp: tuple[float, float] = (0.88, 1.12)


class Augmenter:
    """``augmenter(audio (B, N), encoder, seed) -> (B, K, n_mels + 1)`` augmented log-mel frames."""

    def __init__(self, config: AugmentConfig = AugmentConfig(), sample_rate: int = 16000):
        self.config, self.sr = config, sample_rate

    def __call__(self, audio: torch.Tensor, encoder, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(int(seed) % (2 ** 63))
        c = self.config
        B = audio.shape[0]
        keep = _draw(g, B, c.clean)
        audio = self.waveform(audio, g, ~keep)
        spec = encoder.power_spectrogram(audio)  # (B, F, K)
        spec = self.spectral(spec, g, ~keep)
        return encoder.log_mel_from_power(spec)

    # --- waveform --------------------------------------------------------------------------------
    def waveform(self, audio: torch.Tensor, g: torch.Generator, active: torch.Tensor) -> torch.Tensor:
        c, B = self.config, audio.shape[0]
        x = audio
        on = active & _draw(g, B, c.reverb)
        if on.any():
            x = torch.where(on[:, None], self._reverb(x, g), x)
        on = active & _draw(g, B, c.noise)
        if on.any():
            x = torch.where(on[:, None], self._noise(x, g), x)
        on = active & _draw(g, B, c.gain)
        gain_db = torch.empty(B).uniform_(-12.0, 6.0, generator=g)
        x = x * torch.where(on, 10 ** (gain_db / 20), torch.ones(B))[:, None].to(x)
        on = active & _draw(g, B, c.clipping)
        if on.any():
            share = torch.empty(B).uniform_(0.001, 0.02, generator=g)
            level = torch.quantile(x.abs().float(), 1 - share, dim=1).diagonal()[:, None].to(x)  # (B, 1)
            x = torch.where(on[:, None], torch.maximum(torch.minimum(x, level), -level), x)
        on = active & _draw(g, B, c.codec)
        if on.any():
            x = torch.where(on[:, None], mu_law_round_trip(x), x)
        return x

    def _reverb(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        B, N = x.shape
        rt60 = torch.empty(B, 1).uniform_(0.15, 0.8, generator=g)
        L = int(0.8 * self.sr)
        t = torch.arange(L) / self.sr
        ir = torch.randn(B, L, generator=g) * torch.exp(-6.9 * t[None] / rt60)  # -60 dB at rt60
        ir[:, 0] = 1.0 / torch.empty(B).uniform_(0.2, 0.6, generator=g)  # direct-to-reverberant ratio
        ir = ir / ir.norm(dim=1, keepdim=True)
        n = 1 << (N + L - 1).bit_length()
        wet = torch.fft.irfft(torch.fft.rfft(x, n) * torch.fft.rfft(ir.to(x), n), n)[:, :N]
        return wet * (x.norm(dim=1, keepdim=True) / wet.norm(dim=1, keepdim=True).clamp(min=1e-9))

    def _noise(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        B, N = x.shape
        noise = torch.randn(B, N, generator=g).to(x)
        pink = _draw(g, B, 0.5)
        if pink.any():  # 1/f power: scale the spectrum by 1/sqrt(f)
            spec = torch.fft.rfft(noise)
            f = torch.arange(spec.shape[1]).clamp(min=1).to(x)
            noise = torch.where(pink[:, None], torch.fft.irfft(spec / f.sqrt(), N), noise)
        lo, hi = self.config.snr_db
        snr = torch.empty(B, 1).uniform_(lo, hi, generator=g).to(x)
        signal = x.pow(2).mean(1, keepdim=True).clamp(min=1e-12)
        noise = noise * torch.sqrt(signal / noise.pow(2).mean(1, keepdim=True).clamp(min=1e-12) / 10 ** (snr / 10))
        return x + noise

    # --- spectrum --------------------------------------------------------------------------------
    def spectral(self, spec: torch.Tensor, g: torch.Generator, active: torch.Tensor) -> torch.Tensor:
        c, (B, Fq) = self.config, spec.shape[:2]
        f = torch.linspace(0, self.sr / 2, Fq)  # bin frequencies, Hz
        gain = torch.ones(B, Fq)
        tel = active & _draw(g, B, c.telephone)
        narrow = active & ~tel & _draw(g, B, c.narrowband)
        band = ((f >= 300) & (f <= 3400)).float()
        gain = torch.where(tel[:, None], gain * (1e-4 + band), gain)
        gain = torch.where(narrow[:, None], gain * (1e-4 + (f < 3900).float()), gain)
        on = active & _draw(g, B, c.eq)
        if on.any():  # a smooth curve: a few random gains interpolated over frequency, plus a tilt
            knots = torch.empty(B, 1, 6).uniform_(-9.0, 9.0, generator=g)
            curve = F.interpolate(knots, size=Fq, mode="linear", align_corners=True)[:, 0]
            tilt = torch.empty(B, 1).uniform_(-6.0, 6.0, generator=g) * (f / (self.sr / 2) - 0.5)[None]
            gain = torch.where(on[:, None], gain * 10 ** ((curve + tilt) / 10), gain)
        spec = spec * gain[:, :, None].to(spec)
        on = active & _draw(g, B, c.vtlp)
        if on.any():
            alpha = torch.empty(B).uniform_(*c.warp, generator=g)
            spec = torch.where(on[:, None, None], _warp(spec, alpha.to(spec)), spec)
        return spec


def mu_law_round_trip(x: torch.Tensor, mu: float = 255.0) -> torch.Tensor:
    """G.711 mu-law: clamp to full scale, compress, quantize to 8 bits, expand."""
    x = x.clamp(-1.0, 1.0)
    y = torch.sign(x) * torch.log1p(mu * x.abs()) / torch.log1p(torch.tensor(mu))
    y = torch.round((y + 1) * 127.5) / 127.5 - 1  # 256 levels
    return torch.sign(y) * ((1 + mu) ** y.abs() - 1) / mu


def _draw(g: torch.Generator, n: int, p: float) -> torch.Tensor:
    """(n,) bool, each True with probability p."""
    return torch.rand(n, generator=g) < p


def _warp(spec: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """(B, F, K) power with frequency f moved to alpha * f (linear interpolation between bins)."""
    B, Fq, K = spec.shape
    src = torch.arange(Fq, dtype=spec.dtype)[None] / alpha[:, None]  # bin that lands on each bin
    lo = src.floor().clamp(0, Fq - 1)
    w = (src - lo).clamp(0, 1)
    lo = lo.long()
    hi = (lo + 1).clamp(max=Fq - 1)
    take = lambda idx: torch.gather(spec, 1, idx[:, :, None].expand(B, Fq, K))  # noqa: E731
    out = take(lo) * (1 - w)[:, :, None] + take(hi) * w[:, :, None]
    return out * (src < Fq - 1).to(spec)[:, :, None]  # nothing beyond the top bin
