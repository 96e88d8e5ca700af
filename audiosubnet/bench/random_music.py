"""Random-weight music models in the layout the music engine and scorer load (see random_models.py).

    build_musicgen(path, "tiny")     MusicgenForConditionalGeneration + a small T5-style tokenizer -> musicgen
    build_musicgen(path, "medium")   the facebook/musicgen-medium architecture (1.5B parameters), random
    build_clap(path)                 a tiny ClapModel + tokenizer + feature extractor        -> scoring/music.py

The T5 tokenizer of the published models is in no pip package: `build_tokenizer` trains a small Unigram
model with the `tokenizers` library on a few sentences and saves it as a T5TokenizerFast folder (pad 0,
</s> 1, <unk> 2, as T5). Weights are random (seeded): only shapes, lengths and timings mean anything.
Importing this module does not import torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import ClapConfig, MusicgenConfig, T5Tokenizer

MUSICGEN_SIZES = ("tiny", "small", "medium", "large")

_SENTENCES = [
    "lo-fi beat with soft piano and vinyl crackle",
    "upbeat electronic dance track with a heavy kick drum",
    "calm acoustic guitar melody, warm and relaxing",
    "epic orchestral score with strings, brass and timpani",
    "jazz trio with walking bass, brushed drums and a smooth saxophone solo",
    "ambient synth pads, slow and dreamy, with a distant bell",
    "rock song with distorted electric guitars and a fast drum groove",
    "a sine tone that rises in pitch, then a low hum, then white noise",
    "the quick brown fox jumps over the lazy dog 0123456789",
]

# published decoder sizes (the text encoder is t5-base for all three)
_DECODERS: dict[str, dict[str, Any]] = {
    "small": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, ffn_dim=4096),
    "medium": dict(hidden_size=1536, num_hidden_layers=48, num_attention_heads=24, ffn_dim=6144),
    "large": dict(hidden_size=2048, num_hidden_layers=48, num_attention_heads=32, ffn_dim=8192),
}


def build_tokenizer(path: str | Path, vocab_size: int = 200) -> T5Tokenizer:
    """A small T5 tokenizer (Unigram, SentencePiece-style pre-tokenizer) saved in `path`; returns it."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import T5Tokenizer  # the tokenizers-backed class (T5TokenizerFast is its alias in v5)

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"],
                                      unk_token="<unk>", show_progress=False)
    tok.train_from_iterator(_SENTENCES * 4, trainer=trainer)
    from tokenizers.processors import TemplateProcessing

    tok.post_processor = TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                            special_tokens=[("</s>", tok.token_to_id("</s>"))])
    fast = T5Tokenizer(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                           extra_ids=0)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(path)
    return fast


def musicgen_config(size: str = "tiny", vocab_size: int = 32128) -> MusicgenConfig:
    from transformers import EncodecConfig, MusicgenConfig, MusicgenDecoderConfig, T5Config

    if size not in MUSICGEN_SIZES:
        raise ValueError(f"size must be one of {MUSICGEN_SIZES}, not {size!r}")
    codec: dict[str, Any] = dict(sampling_rate=32000, audio_channels=1, upsampling_ratios=[8, 5, 4, 4],
                                 target_bandwidths=[2.2], codebook_size=2048, normalize=False, use_causal_conv=False)
    if size == "tiny":
        text = T5Config(vocab_size=vocab_size, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
        audio = EncodecConfig(**codec, hidden_size=16, num_filters=4, num_residual_layers=1, codebook_dim=16,
                              num_lstm_layers=1)
        dec = MusicgenDecoderConfig(vocab_size=2048, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                    ffn_dim=64, num_codebooks=4, max_position_embeddings=2048)
    else:
        text = T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12)
        audio = EncodecConfig(**codec, hidden_size=128, num_filters=64, codebook_dim=128, num_lstm_layers=2)
        dec = MusicgenDecoderConfig(vocab_size=2048, num_codebooks=4, max_position_embeddings=2048,
                                    **_DECODERS[size])
    return MusicgenConfig(text_encoder=text.to_dict(), audio_encoder=audio.to_dict(), decoder=dec.to_dict())


def build_musicgen(path: str | Path, size: str = "tiny", *, seed: int = 0) -> Path:
    """MusicGen + tokenizer in `path`, loadable as `musicgen:<path>` or `hf:<path>`. Full sizes write
    gigabytes (fp32); use them on the machine that times them."""
    import torch
    from transformers import MusicgenForConditionalGeneration

    path = Path(path)
    tok = build_tokenizer(path)
    torch.manual_seed(seed)
    config = musicgen_config(size, vocab_size=len(tok) if size == "tiny" else 32128)
    model = MusicgenForConditionalGeneration(config).eval()  # type: ignore[no-untyped-call]  # transformers: untyped
    with torch.no_grad():  # EnCodec's codebooks start at zero (k-means fills them): make codes audible
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_(0.0, 1.0)
            if hasattr(layer.codebook, "embed_avg"):
                layer.codebook.embed_avg.copy_(layer.codebook.embed)
            if hasattr(layer.codebook, "inited"):
                layer.codebook.inited.fill_(True)
    model.save_pretrained(path)
    return path


# ---- CLAP ------------------------------------------------------------------------------------------
def clap_config(projection_dim: int = 32, vocab_size: int = 200) -> ClapConfig:
    from transformers import ClapAudioConfig, ClapConfig, ClapTextConfig

    text = ClapTextConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=64, max_position_embeddings=128, projection_dim=projection_dim,
                          pad_token_id=0)
    audio = ClapAudioConfig(patch_embeds_hidden_size=16, hidden_size=128, depths=[1, 1, 1, 1],
                            num_attention_heads=[1, 1, 2, 2], window_size=8, spec_size=256, num_mel_bins=64,
                            projection_dim=projection_dim, enable_fusion=False)
    return ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=projection_dim)


def build_clap(path: str | Path, *, seed: int = 0) -> Path:
    """A tiny ClapModel + tokenizer + ClapFeatureExtractor (48 kHz, 10 s windows) in `path`."""
    import torch
    from transformers import ClapFeatureExtractor, ClapModel

    path = Path(path)
    tok = build_tokenizer(path)
    torch.manual_seed(seed)
    model = ClapModel(clap_config(vocab_size=len(tok))).eval()  # type: ignore[no-untyped-call]  # transformers: untyped
    model.save_pretrained(path)
    ClapFeatureExtractor(truncation="rand_trunc", padding="repeatpad").save_pretrained(path)
    return path
