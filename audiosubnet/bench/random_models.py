"""Random-weight models in the layout the engines load: the one place that builds them.

Tests build `size="tiny"` models (seconds on a CPU) and load them through the engines' real
`setup()` code; `scripts/gpu_engines.py` and `asn bench --random-weights` build `size="full"`
models (the published default architectures) to time the engines where weights cannot be
downloaded. Each builder writes a folder that `hf:<folder>` or `<engine>:<folder>` loads:

    build_mms(path)        VitsModel + VitsTokenizer (vocab.json)                    -> mms
    build_speecht5(path)   SpeechT5ForTextToSpeech + char sentencepiece tokenizer,
                           HiFi-GAN vocoder in path/hifigan                         -> speecht5
    build_bark(path)       BarkModel + BERT vocab + .npy voice presets              -> bark

Weights are random (seeded), so the audio is noise-like; only shapes, lengths, dtypes and
timings mean anything. Importing this module does not import torch.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import (
        BarkConfig,
        GenerationConfig,
        SpeechT5Config,
        SpeechT5HifiGanConfig,
        VitsConfig,
    )

SIZES = ("tiny", "full")

# Characters every builder's tokenizer knows: enough for English prompts with numbers.
_CHARS = string.ascii_lowercase + string.ascii_uppercase + string.digits + " .,!?'-:;\"()"


def _check(size: str) -> None:
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, not {size!r}")


def _seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


# ---- VITS / MMS ----------------------------------------------------------------------------
def mms_config(size: str = "tiny") -> VitsConfig:
    """`VitsConfig()` (the facebook/mms-tts-eng architecture) or a tiny one with the same structure."""
    from transformers import VitsConfig

    _check(size)
    if size == "full":
        return VitsConfig(vocab_size=38)
    return VitsConfig(
        vocab_size=38, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, ffn_dim=32, flow_size=8,
        spectrogram_bins=9, upsample_initial_channel=16, upsample_rates=[4, 4], upsample_kernel_sizes=[8, 8],
        resblock_kernel_sizes=[3, 5], resblock_dilation_sizes=[[1, 3], [1, 3]],
        prior_encoder_num_flows=2, prior_encoder_num_wavenet_layers=2, posterior_encoder_num_wavenet_layers=2,
        duration_predictor_filter_channels=16, depth_separable_num_layers=2, duration_predictor_num_flows=2,
        sampling_rate=16000,
    )


def _vits_vocab(vocab_size: int) -> dict[str, int]:
    # mms-tts style: id 0 is the blank the tokenizer puts between characters.
    symbols = ["<pad>", " ", "'", "-", *string.ascii_lowercase, ".", ",", "!", "?", ":", ";", "<unk>"]
    symbols = symbols[: vocab_size - 1] + ["<unk>"] if len(symbols) > vocab_size else symbols
    return {s: i for i, s in enumerate(symbols)}


def build_mms(path: str | Path, size: str = "tiny", *, seed: int = 0, language: str = "eng") -> Path:
    """A VITS model + VitsTokenizer (vocab.json) in `path`, loadable as `mms:<path>` or `hf:<path>`."""
    from transformers import VitsModel, VitsTokenizer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    _seed(seed)
    config = mms_config(size)
    vocab = _vits_vocab(config.vocab_size)
    config.vocab_size = max(config.vocab_size, len(vocab))
    model = VitsModel(config).eval()  # type: ignore[no-untyped-call]  # transformers: untyped
    if size == "tiny":  # Kaiming init drives the tiny decoder's tanh into saturation; keep it linear-ish
        import torch

        with torch.no_grad():
            model.decoder.conv_post.weight.mul_(0.05)
    model.save_pretrained(path)
    vocab_file = path / "vocab.json"
    vocab_file.write_text(json.dumps(vocab, indent=1), encoding="utf-8")
    tok = VitsTokenizer(str(vocab_file), language=language, add_blank=True, normalize=True, phonemize=False,
                        is_uroman=False, pad_token="<pad>", unk_token="<unk>")
    tok.save_pretrained(path)
    return path


# ---- SpeechT5 + HiFi-GAN -------------------------------------------------------------------
def speecht5_configs(size: str = "tiny") -> tuple[SpeechT5Config, SpeechT5HifiGanConfig]:
    """(SpeechT5Config, SpeechT5HifiGanConfig): the published defaults, or tiny ones."""
    from transformers import SpeechT5Config, SpeechT5HifiGanConfig

    _check(size)
    if size == "full":
        return SpeechT5Config(), SpeechT5HifiGanConfig()
    tts = SpeechT5Config(
        vocab_size=81, hidden_size=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
        decoder_layers=2, decoder_attention_heads=2, decoder_ffn_dim=64, speech_decoder_prenet_units=16,
        speech_decoder_postnet_units=16, speech_decoder_postnet_layers=3, speaker_embedding_dim=512,
        num_mel_bins=80, max_speech_positions=600, max_text_positions=300, encoder_max_relative_position=40,
        initializer_range=0.1,  # livelier than 0.02: the tiny decoder's trajectory depends on its input
    )
    voc = SpeechT5HifiGanConfig(upsample_initial_channel=16, upsample_rates=[4, 4, 4, 4],
                                upsample_kernel_sizes=[8, 8, 8, 8], resblock_kernel_sizes=[3, 5],
                                resblock_dilation_sizes=[[1, 3], [1, 3]],
                                initializer_range=0.2)  # about Kaiming scale: audible-size output
    return tts, voc


def train_char_spm(model_prefix: str | Path, chars: str = _CHARS) -> Path:
    """A sentencepiece character model like microsoft/speecht5_tts's spm_char.model.

    Ids follow SpeechT5: <s>=0, <pad>=1, </s>=2, <unk>=3, then one piece per character.
    """
    import io

    import sentencepiece as spm

    lines = [chars, *(" ".join(chars[i:i + 7]) for i in range(0, len(chars), 7))] * 4
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=proto, model_type="char",
        vocab_size=len(set(chars.replace(" ", ""))) + 5,  # + "▁" + 4 specials
        bos_id=0, pad_id=1, eos_id=2, unk_id=3, character_coverage=1.0, minloglevel=2,
        add_dummy_prefix=True, normalization_rule_name="identity",
    )
    out = Path(f"{model_prefix}.model")
    out.write_bytes(proto.getvalue())
    return out


def build_speecht5(path: str | Path, size: str = "tiny", *, seed: int = 0, stop_bias: float = -5.0,
                   stop_weight_std: float = 0.5, frame_weight_std: float = 0.3) -> Path:
    """SpeechT5 TTS + tokenizer in `path`, its HiFi-GAN vocoder in `path/hifigan` (found by the engine)."""
    from transformers import SpeechT5ForTextToSpeech, SpeechT5HifiGan, SpeechT5Tokenizer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    _seed(seed)
    tts_cfg, voc_cfg = speecht5_configs(size)
    spm_file = train_char_spm(path / "spm_char")
    tok = SpeechT5Tokenizer(str(spm_file))
    tok.save_pretrained(path)
    tts_cfg.vocab_size = max(tts_cfg.vocab_size, len(tok))
    model = SpeechT5ForTextToSpeech(tts_cfg).eval()  # type: ignore[no-untyped-call]  # transformers: untyped
    vocoder = SpeechT5HifiGan(voc_cfg).eval()  # type: ignore[no-untyped-call]  # transformers: untyped
    if size == "tiny":
        import torch

        with torch.no_grad():
            # A stop head that fires after a few dozen steps, at a step that depends on the item
            # (like a trained model), instead of at once or never.
            stop = model.speech_decoder_postnet.prob_out
            stop.weight.normal_(0.0, stop_weight_std)
            stop.bias.fill_(stop_bias)
            # frames big enough that the prenet (and its seeded dropout) steers the next step
            model.speech_decoder_postnet.feat_out.weight.normal_(0.0, frame_weight_std)
            # random mel statistics, so the vocoder's normalisation is exercised
            vocoder.mean.copy_(torch.randn(voc_cfg.model_in_dim) * 0.1)
            vocoder.scale.copy_(torch.rand(voc_cfg.model_in_dim) + 0.5)
    model.save_pretrained(path)
    vocoder.save_pretrained(path / "hifigan")
    return path


# ---- Bark ----------------------------------------------------------------------------------
# suno/bark-small and suno/bark share vocabularies; they differ in depth and width.
_BARK_VOCABS = {
    "semantic": dict(input_vocab_size=129600, output_vocab_size=10048),
    "coarse_acoustics": dict(input_vocab_size=12096, output_vocab_size=12096),
    "fine_acoustics": dict(input_vocab_size=1056, output_vocab_size=1056, n_codes_total=8, n_codes_given=1),
}
_BARK_SIZES = {
    "tiny": dict(num_layers=1, num_heads=2, hidden_size=16, block_size=1024),
    "small": dict(num_layers=12, num_heads=12, hidden_size=768, block_size=1024),  # suno/bark-small
    "full": dict(num_layers=24, num_heads=16, hidden_size=1024, block_size=1024),  # suno/bark
}


def bark_config(size: str = "tiny") -> BarkConfig:
    """BarkConfig for "tiny", "small" (suno/bark-small) or "full" (suno/bark)."""
    from transformers import BarkConfig, EncodecConfig

    if size not in _BARK_SIZES:
        raise ValueError(f"size must be one of {tuple(_BARK_SIZES)}, not {size!r}")
    dims = _BARK_SIZES[size]
    subs = {k: {**v, **dims, "bias": False, "dropout": 0.0} for k, v in _BARK_VOCABS.items()}
    if size == "tiny":
        codec = EncodecConfig(hidden_size=8, num_filters=4, num_residual_layers=1, upsampling_ratios=[8, 5, 4, 2],
                              codebook_size=1024, codebook_dim=8, num_lstm_layers=1,
                              target_bandwidths=[1.5, 3.0, 6.0, 12.0, 24.0], sampling_rate=24000)
    else:
        codec = EncodecConfig(target_bandwidths=[1.5, 3.0, 6.0, 12.0, 24.0], sampling_rate=24000)
    return BarkConfig(semantic_config=subs["semantic"], coarse_acoustics_config=subs["coarse_acoustics"],
                      fine_acoustics_config=subs["fine_acoustics"], codec_config=codec.to_dict())


def bark_generation_config(max_semantic_tokens: int = 768) -> GenerationConfig:
    """Bark's nested generation settings as a plain `GenerationConfig` (transformers 5 cannot save
    `BarkGenerationConfig` itself); `BarkModel.generate` reads the nested dicts back."""
    from transformers import GenerationConfig
    from transformers.models.bark.generation_configuration_bark import BarkGenerationConfig

    nested = BarkGenerationConfig(  # type: ignore[no-untyped-call]  # transformers: untyped
        semantic_config=dict(max_new_tokens=max_semantic_tokens, do_sample=True, temperature=0.7),
        coarse_acoustics_config=dict(do_sample=True, temperature=0.7),
        fine_acoustics_config=dict(temperature=0.5),
        sample_rate=24000, codebook_size=1024,
    ).to_dict()
    plain = {k: nested[k] for k in ("semantic_config", "coarse_acoustics_config", "fine_acoustics_config",
                                    "sample_rate", "codebook_size")}
    return GenerationConfig(**plain)  # type: ignore[no-untyped-call]  # transformers: untyped


def _bark_vocab() -> list[str]:
    words = ["the", "a", "and", "is", "of", "to", "hello", "world", "speech", "test", "this", "in", "it"]
    pieces = [f"##{c}" for c in string.ascii_lowercase + string.digits]
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_CHARS.replace(" ", ""), *words, *pieces]


BARK_VOICES = ("v2/en_speaker_0", "v2/en_speaker_6")


def build_bark(path: str | Path, size: str = "tiny", *, seed: int = 0, voices: tuple[str, ...] = BARK_VOICES,
               max_semantic_tokens: int | None = None) -> Path:
    """A BarkModel, a BERT tokenizer (vocab.txt) and `.npy` voice presets listed in
    speaker_embeddings_path.json, laid out like suno/bark-small."""
    import numpy as np
    from transformers import BarkModel, BertTokenizer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    _seed(seed)
    model = BarkModel(bark_config(size)).eval()  # type: ignore[no-untyped-call]  # transformers: untyped
    import torch

    with torch.no_grad():  # EnCodec's codebooks start at zero (k-means fills them): make codes audible
        for layer in model.codec_model.quantizer.layers:
            layer.codebook.embed.normal_(0.0, 1.0)
            layer.codebook.embed_avg.copy_(layer.codebook.embed)
            layer.codebook.inited.fill_(True)
    model.generation_config = bark_generation_config(max_semantic_tokens or (24 if size == "tiny" else 768))
    model.save_pretrained(path)
    vocab_file = path / "vocab.txt"
    vocab_file.write_text("\n".join(_bark_vocab()) + "\n", encoding="utf-8")
    BertTokenizer(str(vocab_file), do_lower_case=False).save_pretrained(path)
    rng = np.random.default_rng(seed)
    emb_dir = path / "speaker_embeddings"
    index: dict[str, Any] = {"repo_or_path": str(path)}
    for voice in voices:
        (emb_dir / Path(voice).parent).mkdir(parents=True, exist_ok=True)
        n = int(rng.integers(40, 80))  # semantic tokens of the prompt; 75 Hz coarse frames ~ 1.5x
        arrays = {
            "semantic_prompt": rng.integers(0, 10000, size=(n,)),
            "coarse_prompt": rng.integers(0, 1024, size=(2, int(n * 1.5))),
            "fine_prompt": rng.integers(0, 1024, size=(8, int(n * 1.5))),
        }
        entry = {}
        for key, arr in arrays.items():
            rel = f"speaker_embeddings/{voice}_{key}.npy"
            np.save(path / rel, arr.astype(np.int64))
            entry[key] = rel
        index[voice] = entry
    (path / "speaker_embeddings_path.json").write_text(json.dumps(index, indent=1), encoding="utf-8")
    return path


def build(engine: str, path: str | Path, size: str = "tiny", **kw: Any) -> Path:
    """Build by engine name: "mms", "speecht5" or "bark"."""
    builders: dict[str, Callable[..., Path]] = {"mms": build_mms, "speecht5": build_speecht5, "bark": build_bark}
    if engine not in builders:
        raise ValueError(f"no random-model builder for engine {engine!r} (have {', '.join(builders)})")
    return builders[engine](path, size, **kw)
