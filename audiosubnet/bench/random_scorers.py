"""Scorers built from published architectures with random weights, for timing on machines without
the checkpoints (and tiny variants for CPU smoke tests). Real loading code paths are untouched:
each builder makes the transformers model and hands it to the scorer's `use_model`.

- ASR: Whisper large-v3-turbo (32 encoder / 4 decoder layers, d_model 1280, 128 mel bins), with a
  fixed number of decoded tokens per clip (random weights would stop at a random EOS);
- UTMOS: wav2vec2-base (12 layers, 768) + the UTMOS22 BLSTM head;
- speaker: WavLM-base-plus x-vector (`WavLMForXVector`, 512-d).
DNSMOS needs no stand-in: its real ONNX weights ship in the `speechmos` wheel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from transformers import WhisperConfig

    from audiosubnet.scoring.asr import TransformersWhisperAsr
    from audiosubnet.scoring.base import Scorer
    from audiosubnet.scoring.pipeline import Scoring
    from audiosubnet.scoring.speaker import XVectorScorer
    from audiosubnet.scoring.utmos import UtmosScorer


def _torch_dtype(device: str, dtype: str) -> tuple[torch.device, torch.dtype]:
    from audiosubnet.runtime.frameworks import torch_device_dtype

    return torch_device_dtype(device, dtype)


def whisper_config(tiny: bool = False) -> WhisperConfig:
    from transformers import WhisperConfig

    if tiny:
        return WhisperConfig(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                             decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128, num_mel_bins=80,
                             vocab_size=51866, max_target_positions=448)
    return WhisperConfig(d_model=1280, encoder_layers=32, decoder_layers=4, encoder_attention_heads=20,
                         decoder_attention_heads=20, encoder_ffn_dim=5120, decoder_ffn_dim=5120, num_mel_bins=128,
                         vocab_size=51866, max_target_positions=448)


def random_asr(device: str = "cpu", dtype: str = "float32", *, tiny: bool = False, new_tokens: int = 100,
               max_batch: int = 32) -> TransformersWhisperAsr:
    import torch
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    from audiosubnet.scoring.asr import TransformersWhisperAsr

    dev, tdt = _torch_dtype(device, dtype)
    cfg = whisper_config(tiny)
    torch.manual_seed(0)
    with dev:  # initialise on the device: random init of 800M parameters on the CPU is slow
        net = WhisperForConditionalGeneration(cfg)
    net = net.to(dev, tdt).eval()  # type: ignore[arg-type]  # transformers types .to() dropping self
    scorer = TransformersWhisperAsr("hf:random/whisper-large-v3-turbo" + ("-tiny" if tiny else ""),
                                    max_batch=max_batch)
    fx = WhisperFeatureExtractor(  # type: ignore[no-untyped-call]  # transformers: untyped
        feature_size=cfg.num_mel_bins)
    scorer.use_model(net, fx, None, device=str(dev))
    scorer.fixed_new_tokens = new_tokens
    return scorer


def random_utmos(device: str = "cpu", dtype: str = "float32", *, tiny: bool = False) -> UtmosScorer:
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from audiosubnet.scoring.utmos import HeadConfig, UtmosScorer, build_utmos

    dev, tdt = _torch_dtype(device, dtype)
    torch.manual_seed(0)
    if tiny:
        cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                             conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
        head = HeadConfig(features_dim=32, num_judges=300, judge_dim=8, domain_dim=8, hidden=16, proj=24)
    else:
        cfg, head = Wav2Vec2Config(), HeadConfig()  # wav2vec2-base, as UTMOS22
    with dev:
        net = build_utmos(Wav2Vec2Model(cfg), head)
    net = net.to(dev, tdt).eval()
    scorer = UtmosScorer("random/utmos" + ("-tiny" if tiny else ""))
    scorer.use_model(net, device=str(dev), normalize=False)
    return scorer


def random_xvector(device: str = "cpu", dtype: str = "float32", *, tiny: bool = False) -> XVectorScorer:
    import torch
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

    from audiosubnet.scoring.speaker import XVectorScorer

    dev, tdt = _torch_dtype(device, dtype)
    torch.manual_seed(0)
    if tiny:
        cfg = WavLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                          conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                          tdnn_dim=(16, 16, 16, 16, 32), xvector_output_dim=24, num_buckets=32,
                          max_bucket_distance=80)
    else:
        cfg = WavLMConfig()  # wavlm-base-plus-sv: 12 layers, 768, TDNN 512x4 + 1500, 512-d x-vector
    with dev:
        net = WavLMForXVector(cfg)
    net = net.to(dev, tdt).eval()  # type: ignore[arg-type]  # transformers types .to() dropping self
    scorer = XVectorScorer("hf:random/wavlm-base-plus-sv" + ("-tiny" if tiny else ""))
    fx = Wav2Vec2FeatureExtractor(  # type: ignore[no-untyped-call]  # transformers: untyped
        do_normalize=True, return_attention_mask=True)
    scorer.use_model(net, fx, device=str(dev), dtype=str(tdt).replace("torch.", ""))
    return scorer


def install_random_scorers(scoring: Scoring, *, tiny: bool = False, new_tokens: int = 100) -> dict[str, str]:
    """Load random-weight stand-ins into `scoring.cache` under the keys its plan uses, so
    `scoring.score(...)` runs the full pipeline on them. DNSMOS is left to load its real weights.
    Returns {cache key: what was installed}."""
    builders: dict[str, Callable[[str, str], Scorer]] = {
        "asr": lambda d, t: random_asr(d, t, tiny=tiny, new_tokens=new_tokens, max_batch=scoring.settings.asr_batch),
        "utmos": lambda d, t: random_utmos(d, t, tiny=tiny),
        "speaker": lambda d, t: random_xvector(d, t, tiny=tiny)}
    installed: dict[str, str] = {}
    for key, dev, dt, _factory in scoring.specs(clone=True):
        kind = key.split(":")[1]
        if kind not in builders:
            continue
        scorer = builders[kind](dev, dt)

        def factory(s: Scorer = scorer) -> Scorer:
            return s

        with scoring.cache.lease(key, factory, device=dev, dtype=dt):
            pass
        installed[key] = type(scorer).__name__
    return installed
