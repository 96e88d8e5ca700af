"""Settings: one pydantic-settings class for every command.

Precedence, highest first (this order is the code in `Settings.settings_customise_sources`):
    1. CLI flags          (passed as keyword overrides to `load_settings`)
    2. `ASN_*` environment (nested sections with `__`: `ASN_MINE__PORT=8091`)
    3. the config file     (`$ASN_CONFIG`, else `./asn.toml`, else `$ASN_HOME/asn.toml`)
    4. defaults            (below)

`ASN_HOME` (default `~/.asn`) holds state: the simulated chain, validator state, nonce stores.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from audiosubnet.errors import ConfigError

ENV_PREFIX = "ASN_"
CONFIG_NAME = "asn.toml"
#: ASN_* variables that are not settings: read straight from the environment by the code, the scripts or the
#: tests. Any other ASN_* variable must name a setting (`asn config show`); an unknown one is an error.
ENV_NOT_SETTINGS = frozenset({
    "ASN_CONFIG",            # the config file (config_path)
    "ASN_DEBUG",             # tracebacks instead of one-line errors
    "ASN_NO_PROGRESS",       # no progress bars or live tables
    "ASN_CUDA_GRAPHS",       # 0: every CUDA-graph cache off
    "ASN_TORCH_THREADS",     # CPU threads of torch
    "ASN_ORT_THREADS",       # CPU threads of onnxruntime
    "ASN_SCORE_THREADS",     # CPU threads of one scoring model
    "ASN_HUB_TIMEOUT",       # seconds to wait for the Hugging Face Hub
    "ASN_SPEECHT5_XVECTOR",  # SpeechT5 clone: x-vector encoder (repo or folder)
    "ASN_SPEECHT5_VOCODER",  # SpeechT5: vocoder (repo or folder)
    "ASN_BENCH_OUT",         # benchmark scripts: folder for their JSON/CSV
    "ASN_TEST_SEED",         # tests: the seed of a randomised test
})

_T = TypeVar("_T")
Device = str  # "auto" | "cpu" | "cuda" | "cuda:N"
DType = Literal["auto", "float32", "float16", "bfloat16"]


def default_home() -> Path:
    return Path(os.environ.get("ASN_HOME") or Path.home() / ".asn").expanduser()


def config_path() -> Path | None:
    """The config file in effect, or None. An explicit `ASN_CONFIG` must exist."""
    explicit = os.environ.get("ASN_CONFIG")
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise ConfigError(f"ASN_CONFIG points to {p}, which is not a file",
                              hint="Create it or unset ASN_CONFIG.")
        return p
    for p in (Path.cwd() / CONFIG_NAME, default_home() / CONFIG_NAME):
        if p.is_file():
            return p
    return None


def parse_bytes(value: str | int | None) -> int | None:
    """'8GiB', '500MB', '1.5G', '123' -> bytes; 'auto'/None -> None (caller decides)."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    s = str(value).strip().lower().replace(" ", "")
    if s in ("", "auto", "none"):
        return None
    units = {"k": 1e3, "kb": 1e3, "kib": 2**10, "m": 1e6, "mb": 1e6, "mib": 2**20,
             "g": 1e9, "gb": 1e9, "gib": 2**30, "t": 1e12, "tb": 1e12, "tib": 2**40, "b": 1}
    num = s.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = s[len(num):]
    try:
        return int(float(num) * units.get(unit, 1 if unit == "" else float("nan")))
    except (ValueError, OverflowError):
        raise ConfigError(f"cannot read '{value}' as a size", hint="Use e.g. 8GiB, 500MB or 0.") from None


class _Section(BaseModel):
    """A settings section: an unknown key is an error (a typo must not pass silently)."""

    model_config = ConfigDict(extra="forbid")


def defaults(section: type[BaseModel]) -> dict[str, Any]:
    """Every field's default of a settings section. A subsystem's config (a view of its section: ServiceConfig,
    PolicyConfig, LoopConfig, WatchOptions, MinerContext) takes its defaults from here, so each lives once."""
    return {name: f.get_default(call_default_factory=True) for name, f in section.model_fields.items()}


def view(section: BaseModel, cls: type[_T], names: tuple[str, ...] | None = None, **overrides: Any) -> _T:
    """The dataclass `cls` built from the fields of `section` it has by the same name (only `names`, when given),
    then `overrides`."""
    wanted = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    if names is not None:
        wanted &= set(names)
    values = {k: getattr(section, k) for k in type(section).model_fields if k in wanted}
    return cls(**{**values, **overrides})


class TtsSettings(_Section):
    out_dir: Path = Path("tts_target")
    format: Literal["wav", "flac", "mp3", "ogg"] = "wav"
    max_batch: int = Field(16, ge=1, le=1024, description="rows per engine call, for engines that batch")


class SubnetSettings(_Section):
    """Wallet and network, shared by `asn mine` and `asn validate`."""

    wallet_name: str = "default"
    wallet_hotkey: str = "default"
    wallet_path: Path | None = Field(None, description="wallets folder (default ~/.bittensor/wallets; with "
                                                       "network sim: $ASN_HOME/wallets, where `asn sim wallet` "
                                                       "writes its unencrypted test wallets)")
    network: str = Field("finney", description="finney | test | local | ws://host:port | sim")
    netuid: int = Field(16, ge=0)
    sim_path: Path | None = Field(None, description="SQLite file of the simulated chain (default $ASN_HOME/sim.db)")


class MineSettings(_Section):
    host: str = "0.0.0.0"
    port: int = Field(8091, ge=1, le=65535)
    external_ip: str | None = None
    external_port: int | None = None
    min_validator_stake: float | None = Field(None, ge=0, description="stake a validator needs to be served "
                                              "(default: 1000 on finney/mainnet, 0 on test, local and sim)")
    max_text_chars: int = 512
    max_batch: int = Field(32, ge=1)
    max_wait_ms: float = Field(5.0, ge=0)
    fill_wait_ms: float = Field(30.0, ge=0, description="after a batch, wait up to this long (never longer than a "
                                "batch takes) for the clients it answered, so a busy engine runs full batches, not "
                                "alternating halves (0: off)")
    queue_size: int = Field(256, ge=1)
    concurrency: int = Field(1, ge=1, description="engine calls in flight at once")
    workers: int = Field(1, ge=1, le=64, description="HTTP worker processes in front of the one engine "
                                                     "process (1: everything in one process)")
    rate_limit_per_min: float = Field(600.0, ge=0, description="requests per minute per caller (0 = none)")
    metagraph_refresh_s: float = Field(120.0, gt=0)
    metagraph_max_age_s: float = Field(900.0, ge=0, description="an older metagraph snapshot (refreshes failing) "
                                                                "refuses every caller with 503 (0: never)")
    allow_hotkeys: list[str] = Field([], description="always admitted (no registration/permit/stake checks)")
    deny_hotkeys: list[str] = Field([], description="always refused")
    require_validator_permit: bool = True
    max_body_bytes: int = Field(64 * 1024, ge=1024, description="cap on a /v1/tts request body")
    max_clone_body_bytes: int = Field(8 * 2**20, ge=1024, description="cap on a /v1/clone request body")
    auth_max_age_s: float = Field(10.0, gt=0, le=55, description="btauth/1 freshness window")
    drain_timeout_s: float = Field(30.0, ge=0, description="shutdown waits this long for in-flight requests")
    header_timeout_s: float = Field(10.0, gt=0, description="a connection must send a request's headers within this")
    body_timeout_s: float = Field(30.0, gt=0, description="a request's body must arrive within this")
    keep_alive_s: float = Field(10.0, gt=0, description="idle keep-alive connections are closed after this")
    body_budget_bytes: int = Field(16 * 2**20, ge=2**20, description="request bodies buffered at once per "
                                                                     "process; more wait, then 503")
    seen_log: bool = Field(True, description="keep the short log of who sent which prompt (with the answer's "
                           "fingerprint) that validators use to catch relays; off: this miner gives no evidence")
    isolate_engine: bool = Field(True, description="run the engine in a supervised child process (a native "
                                                   "crash answers 503 and the engine restarts)")
    engine_timeout_s: float = Field(120.0, gt=0, description="an engine call longer than this is stuck: the engine "
                                                             "process is restarted and the batch answered 503")
    publish: bool = Field(True, description="publish ip:port on the chain at start (ServeAxon)")
    clone_model: str | None = Field(None, description="also serve this voice-cloning model on /v1/clone "
                                                      "(auto: as `asn clone`); none: /v1/clone answers 501")
    music_model: str | None = Field(None, description="also serve this text-to-music model on /v1/music "
                                                      "(e.g. musicgen:facebook/musicgen-small); none: 501")


class ValidateSettings(_Section):
    """`asn validate`: rounds, moving averages, weights, prompts, task mix, logging."""

    round_interval_s: float = Field(60.0, ge=0, description="seconds from one round's start to the next")
    alpha: float = Field(0.1, gt=0, le=1, description="moving-average weight of the newest round")
    timeout_s: float = Field(12.0, gt=0, description="per-request deadline cap (scaled down for short texts)")
    weights_every: int = Field(20, ge=1, description="set weights every N rounds (within the chain's rate limit; "
                               "a run with --rounds also sets them after its last round)")
    relay_check: bool = Field(True, description="ask miners' seen logs for relayed prompts every round")
    metagraph_refresh_s: float = Field(300.0, gt=0)
    miners_per_round: int = Field(0, ge=0, description="0 = every queryable miner each round")
    include_validators: bool = Field(False, description="also query hotkeys with a validator permit")
    deny_hotkeys: list[str] = Field([], description="never queried")
    prompts: Path | None = Field(None, description="CSV of prompts (tts_prompts.csv format) instead of the dataset")
    use_dataset: bool = Field(True, description="draw from the original subnet's prompt dataset (HF cache)")
    generated_ratio: float = Field(0.5, ge=0, le=1, description="share of freshly generated prompts")
    clone_ratio: float = Field(0.25, ge=0, le=1, description="share of rounds that are voice-clone tasks")
    music_ratio: float = Field(0.0, ge=0, le=1, description="share of rounds that are text-to-music tasks")
    music_references: Path | None = Field(None, description="folder of private reference music (>= 8 clips) for "
                                                             "the music quality score; needed with music_ratio")
    music_clap_model: str = Field("laion/larger_clap_music", description="CLAP model (HF repo or folder) for "
                                                                          "music relevance and quality")
    music_window: int = Field(32, ge=4, description="answers per miner in the music quality window")
    max_response_bytes: int = Field(16 * 2**20, ge=1024)
    max_connections: int = Field(256, ge=1)
    set_weights: bool = True
    seed: int | None = None
    wandb: bool = False
    wandb_project: str = "asn-validator"
    wandb_entity: str | None = None
    wandb_offline: bool = False
    wandb_samples: int = Field(2, ge=0, description="audio samples logged per round")

class ScoreSettings(_Section):
    """Scoring (`asn score`, the validator): models, sanity limits, composite weights and gates.

    Every field that changes scores enters the scoring profile (`Scoring.version`), so results made
    with different settings are never mixed. See audiosubnet/scoring/composite.py for the formula.
    """

    preset: str = Field("auto", description="auto (gpu stack on CUDA, offline stack on CPU) | offline | gpu")
    asr_model: str = Field("auto", description="auto | tiny.en | fw:<folder or repo> | hf:<folder or repo>")
    asr_beam_size: int = Field(1, ge=1, le=10)
    asr_batch: int = Field(16, ge=1, le=256, description="ASR windows per forward pass")
    mos_models: str = Field("auto", description="comma list of dnsmos, utmos (auto: both on gpu, dnsmos offline)")
    utmos_model: str = Field("utmos", description="utmos (chaanks/UTMOS + chaanks/wav2vec2-small) or a folder")
    dnsmos_backend: Literal["auto", "onnxruntime", "torch"] = "auto"
    dnsmos_max_windows: int = Field(4, ge=1, le=64, description="9 s DNSMOS windows per clip, at most")
    speaker_model: str = Field("auto", description="auto | dvector | ge2e | wavlm | hf:<folder or repo>")
    max_seconds: float = Field(60.0, gt=0)
    min_seconds: float = Field(0.3, ge=0)
    max_chars_per_s: float = Field(35.0, gt=0)
    min_chars_per_s: float = Field(5.0, gt=0)
    weight_intelligibility: float = Field(0.5, ge=0)
    weight_naturalness: float = Field(0.5, ge=0)
    weight_similarity: float = Field(1.0, ge=0, description="clone tasks only")
    weight_utmos: float = Field(0.75, ge=0, description="share of UTMOS in naturalness when both MOS run")
    weight_dnsmos: float = Field(0.25, ge=0)
    wer_zero: float = Field(1.0, gt=0, description="WER at which intelligibility reaches 0 (1 - WER/wer_zero)")
    min_relatedness: float = Field(0.15, ge=0, le=1, description="share of the prompt's content words the "
                                   "transcript must contain; below it the answer is another text and scores 0")
    mos_floor: float = Field(1.5, ge=1, le=5, description="MOS mapped to naturalness 0")
    mos_ceiling: float = Field(4.5, ge=1, le=5, description="MOS mapped to naturalness 1")
    mos_gate: float = Field(0.0, ge=0, le=5, description="naturalness MOS below this scores 0 (0 = off)")
    sim_floor: float | None = Field(None, description="speaker similarity mapped to 0 and gated below "
                                    "(default: per encoder)")
    sim_ceiling: float | None = Field(None, description="speaker similarity mapped to 1 (default: per encoder)")
    duplicate_threshold: float | None = Field(None, gt=0, lt=1, description="fingerprint distance (bit error "
                                              "rate of the worst-matching 30 % of frames) at or below which two "
                                              "answers are copies (default: the detector's own, 0.30)")
    duplicate_policy: Literal["share", "first", "all"] = Field(
        "share", description="answers to one text that are copies of each other: share (each of k gets 1/k of its "
                             "score: copying gains nothing in total, identical honest twins both keep weight); "
                             "first (the earliest keeps its score, the others 0); all (every copy 0)")
    history_size: int = Field(4096, ge=0, description="fingerprints remembered across rounds (~23 KB per 30 s)")


class CloneSettings(_Section):
    """`asn clone watch`: folders, the clone model and the limits on inputs."""

    source: Path = Path("vc_source")
    target: Path = Path("vc_target")
    processed: Path = Path("vc_processed")
    failed: Path = Path("vc_failed")
    model: str = Field("auto", description="clone model: auto (pocket if downloaded, else world) | world | "
                                           "pocket | speecht5-clone | world:espeak:en-us ...")
    format: Literal["wav", "flac", "mp3", "ogg"] = "wav"
    settle_s: float = Field(2.0, ge=0, description="a file must keep its size and mtime this long to be complete")
    poll_s: float = Field(1.0, gt=0, description="rescan interval without file events (polling fallback)")
    orphan_timeout_s: float = Field(600.0, ge=0, description="a file without its partner goes to failed after this")
    max_batch: int = Field(8, ge=1, le=256)
    max_text_chars: int = Field(1000, ge=1)
    max_text_bytes: int = Field(64 * 1024, ge=1)
    min_reference_s: float = Field(1.0, ge=0)
    max_reference_s: float = Field(60.0, gt=0)
    max_audio_bytes: int = Field(100 * 2**20, ge=1)


class ServeSettings(_Section):
    """`asn serve`: the OpenAI-compatible speech server (see audiosubnet/serve/)."""

    host: str = Field("127.0.0.1", description="address to listen on; any other than loopback needs --api-key")
    port: int = Field(8000, ge=1, le=65535)
    models: list[str] = Field([], description="models served, the first is the default (empty: --model)")
    clone_model: str = Field("auto", description="clones saved voices (auto: pocket if downloaded, else world); "
                                                 "none: no saved voices")
    api_keys: list[SecretStr] = Field([], description="accepted Bearer keys (none: open, loopback only)")
    insecure: bool = Field(False, description="allow a non-loopback bind without an API key")
    keep_alive: str = Field("5m", description="unload a model idle this long (e.g. 30s, 5m, 1h; -1: never)")
    rate_limit_per_min: float = Field(600.0, ge=0, description="requests per minute per key or client (0 = none)")
    max_input_chars: int = Field(4096, ge=1, description="longest `input` of /v1/audio/speech")
    max_body_bytes: int = Field(64 * 1024, ge=1024, description="cap on a /v1/audio/speech body")
    max_voice_bytes: int = Field(10 * 2**20, ge=1024, description="cap on a saved-voice upload")
    max_saved_voices: int = Field(1000, ge=0)
    voices: dict[str, str] = Field({}, description="OpenAI voice name -> local voice (unlisted: the default)")
    max_batch: int = Field(32, ge=1)
    max_wait_ms: float = Field(5.0, ge=0)
    fill_wait_ms: float = Field(30.0, ge=0, description="after a batch, wait up to this long (never longer than a "
                                "batch takes) for the clients it answered, so a busy engine runs full batches, not "
                                "alternating halves (0: off)")
    queue_size: int = Field(256, ge=1)
    concurrency: int = Field(1, ge=1)
    request_timeout_s: float = Field(120.0, gt=0, description="a synthesis taking longer answers 504")
    drain_timeout_s: float = Field(30.0, ge=0)
    workers: int = Field(1, ge=1, le=64, description="HTTP worker processes in front of the one that runs the models")


class Settings(BaseSettings):
    """Every setting of `asn`. `asn config show` prints the effective values and their origin."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    home: Path = Field(default_factory=default_home, description="state folder (ASN_HOME)")
    device: Device = Field("auto", description="auto | cpu | cuda | cuda:N")
    devices: str | None = Field(None, description="one engine process per device: all | 0,1,... | cpu:N "
                                                  "(none: one engine on `device`)")
    dtype: DType = Field("auto", description="auto (fp16/bf16 on CUDA, fp32 on CPU) | float32 | float16 | bfloat16")
    cache_budget: str = Field("auto", description="ModelCache budget: auto (90% GPU / 50% RAM), or e.g. 8GiB")
    model: str = Field("auto", description="default TTS model id (auto: the offline Piper voice, else espeak)")
    voice: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="log level of asn's own loggers (-v / -q override it)")

    tts: TtsSettings = TtsSettings()
    subnet: SubnetSettings = SubnetSettings()
    mine: MineSettings = MineSettings()
    validator: ValidateSettings = ValidateSettings()  # `validate` would shadow a pydantic method
    score: ScoreSettings = ScoreSettings()
    clone: CloneSettings = CloneSettings()
    serve: ServeSettings = ServeSettings()

    @field_validator("device")
    @classmethod
    def _check_device(cls, v: str) -> str:
        v = v.strip().lower()
        if v in ("auto", "cpu", "cuda", "mps") or (v.startswith("cuda:") and v[5:].isdigit()):
            return v
        raise ValueError("must be auto, cpu, cuda or cuda:N")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, v: Any) -> Any:
        return v.strip().upper() if isinstance(v, str) else v

    @field_validator("cache_budget")
    @classmethod
    def _check_budget(cls, v: str) -> str:
        parse_bytes(v)
        return v

    @model_validator(mode="after")
    def _default_wallet_path(self) -> Settings:
        """Test wallets of the simulator live under ASN_HOME, never beside real ones."""
        if self.subnet.wallet_path is None:
            sim = self.subnet.network.strip().lower() == "sim"
            path = self.home / "wallets" if sim else Path("~/.bittensor/wallets")
            self.subnet = self.subnet.model_copy(update={"wallet_path": path})
        return self

    @property
    def wallet_folder(self) -> Path:
        """`subnet.wallet_path`, always set once the settings are validated (see `_default_wallet_path`)."""
        if self.subnet.wallet_path is None:  # only a model built without validation
            raise ValueError("subnet.wallet_path is not set")
        return self.subnet.wallet_path

    @property
    def cache_budget_bytes(self) -> int | None:
        return parse_bytes(self.cache_budget)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # flag > env > file > default
        return init_settings, env_settings, _toml_source(settings_cls)


def _toml_source(settings_cls: type[BaseSettings]) -> PydanticBaseSettingsSource:
    return TomlConfigSettingsSource(settings_cls, toml_file=config_path())


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """{'mine.port': 1} -> {'mine': {'port': 1}}; None values (flag not given) are dropped."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if value is None:
            continue
        parts = key.split(".")
        d = out
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = value
    return out


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


# ---- unknown keys ------------------------------------------------------------------------
def _section(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def setting_keys() -> list[str]:
    """Every dotted setting key ('device', 'mine.port', ...), sections included ('mine')."""
    keys = []
    for name, f in Settings.model_fields.items():
        keys.append(name)
        sub = _section(f.annotation)
        if sub is not None:
            keys.extend(f"{name}.{k}" for k in sub.model_fields)
    return keys


def env_names() -> list[str]:
    """The ASN_* variable of every setting key."""
    return [env_name(k) for k in setting_keys()]


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper().replace(".", "__")


def _takes_nested(key: str) -> bool:
    """A dict setting (serve.voices) takes deeper ASN_SERVE__VOICES__NAME variables."""
    model: type[BaseModel] = Settings
    *head, last = key.split(".")
    for part in head:
        model = _section(model.model_fields[part].annotation) or model
    return typing.get_origin(model.model_fields[last].annotation) is dict


def _closest(key: str, candidates: list[str]) -> str:
    match = difflib.get_close_matches(key, candidates, n=1, cutoff=0.5)
    return f"; did you mean {match[0]!r}?" if match else ""


def _unknown_in(data: dict[str, Any], model: type[BaseModel] = Settings, prefix: str = "") -> Iterator[str]:
    """Dotted keys of a nested dict (a config file, flags) that name no setting."""
    for k, v in data.items():
        key = f"{prefix}{k}"
        field = model.model_fields.get(k)
        if field is None:
            yield key
            continue
        sub = _section(field.annotation)
        if sub is not None and isinstance(v, dict):
            yield from _unknown_in(v, sub, key + ".")


def _unknown_env(environ: typing.Mapping[str, str]) -> Iterator[str]:
    valid = set(setting_keys())
    for name in environ:
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in ENV_NOT_SETTINGS:
            continue
        parts = upper[len(ENV_PREFIX):].lower().split("__")
        key = ".".join(parts[:2])
        if key not in valid or (len(parts) > 2 and not _takes_nested(key)):
            yield name


def check_unknown(flags: dict[str, Any] | None = None, environ: typing.Mapping[str, str] | None = None) -> None:
    """ConfigError naming the first unknown key of the flags, the ASN_* environment or the config file, where it
    came from, and the closest valid key."""
    keys = setting_keys()
    hint = "Fix or remove it; `asn config show` lists every setting."
    for key in _unknown_in(_nest(flags or {})):
        raise ConfigError(f"unknown setting {key!r} (flag){_closest(key, keys)}", hint=hint)
    for name in _unknown_env(os.environ if environ is None else environ):
        near = _closest(name.upper(), env_names() + sorted(ENV_NOT_SETTINGS))
        raise ConfigError(f"unknown setting {name} in the environment{near}",
                          hint="Sections and keys are joined by two underscores (ASN_MINE__PORT); unset it "
                               "or fix the name. `asn config show` lists every setting.")
    path = config_path()
    if path is not None:
        for key in _unknown_in(_toml_source(Settings)()):
            raise ConfigError(f"unknown setting {key!r} in the config file {path}{_closest(key, keys)}", hint=hint)


def load_settings(**flags: Any) -> Settings:
    """Build settings with CLI flags on top. Flags use dotted keys: load_settings(**{'mine.port': 9000}).
    An unknown key (flag, ASN_* variable not in ENV_NOT_SETTINGS, config file) is a ConfigError."""
    try:
        check_unknown(flags)
        return Settings(**_nest(flags))
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise ConfigError(f"invalid setting {where}: {err['msg']}",
                          hint="Check the flag, the ASN_* variable or the config file (`asn config show`).") from e
    except (OSError, ValueError) as e:  # unreadable / invalid TOML
        raise ConfigError(f"cannot read the config file: {e}",
                          hint="Fix the file or point ASN_CONFIG elsewhere.") from e


def settings_origins(**flags: Any) -> list[tuple[str, Any, str]]:
    """(dotted key, effective value, origin) for every setting; origin is flag/env/file/default."""
    settings = load_settings(**flags)
    flag_keys = set(_flatten(_nest(flags)))
    env_src = EnvSettingsSource(Settings, env_prefix=ENV_PREFIX, env_nested_delimiter="__")
    env_keys = set(_flatten(env_src()))
    path = config_path()
    file_keys = set(_flatten(_toml_source(Settings)())) if path else set()
    values = _flatten(settings.model_dump(mode="json"))
    rows = []
    for key, value in values.items():
        if key in flag_keys:
            origin = "flag"
        elif key in env_keys or any(key.startswith(k + ".") for k in env_keys):
            origin = f"env {env_name(key)}"
        elif key in file_keys:
            origin = f"file {path}"
        else:
            origin = "default"
        rows.append((key, value, origin))
    return rows

