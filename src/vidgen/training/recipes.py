"""Recipes: one TOML file fully describes a training run.

    kind = "cogvideox-vae"              # which builder (see `list_kinds()`)
    description = "..."
    name = "..."                        # optional: defaults to the file's stem

    [model]                             # a named size of the kind's model + config overrides
    size = "shapes"
    latent_channels = 8

    [data]                              # a dataset of `vidgen.data.get_dataset` + its options
    name = "shapes"
    num_items = 2048
    [[data.extra]]                      # optional: more datasets, concatenated
    name = "digits"

    [train]                             # `TrainConfig` (steps, batch_size, lr, ema_decay, bf16, seed, ...)
    steps = 2000

    [output]
    dir = "runs/cogvideox-shapes-vae"   # relative paths are relative to the working directory

    [<kind section>]                    # tables the kind defines (e.g. [loss], [condition], [sample])

Every table is parsed into a dataclass; an unknown key, a wrong type or a bad value raises a
`VidgenError` that names the key and lists what is allowed. `--set section.key=value` overrides any
value (the value is read as TOML, falling back to a plain string). The resolved recipe is saved as
`run_dir/recipe.json`; `--resume` compares against it and refuses changes that would make the
checkpoint meaningless (model, data, kind options, seed, batch size ...), while intervals, step count,
workers and device may change. recipe.json keeps the recipe's name, so an export made later from the run
folder (`export_checkpoint`) still names the recipe in its pipeline.json.

Shipped recipes live in `vidgen/recipes/*.toml` and can be named without path or extension.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import tomllib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vidgen.errors import VidgenError
from vidgen.modeling import read_json, write_json
from vidgen.training.trainer import (
    EvalHook,
    ExportHook,
    Objective,
    SampleHook,
    TrainConfig,
    Trainer,
    TrainResult,
)

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"
RECIPE_FILE = "recipe.json"
TOP_LEVEL = ("kind", "description", "model", "data", "train", "output", "name")

# Keys that may differ between a run and its resumption: they change neither the model nor the data.
# train.init_from is read only before step 0 (on resume the checkpoint holds the weights).
RESUMABLE_CHANGES = ("name", "description", "output.", "train.steps", "train.log_every", "train.eval_every",
                     "train.sample_every", "train.checkpoint_every", "train.keep_checkpoints", "train.keep_steps",
                     "train.num_workers", "train.device", "train.export", "train.export_dtype", "train.init_from",
                     "train.init_grow")


# ----------------------------------------------------------------------------- the recipe


@dataclasses.dataclass
class ModelSpec:
    size: str                                   # a named size of the kind (e.g. "shapes", "tiny")
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)  # config fields to replace


@dataclasses.dataclass
class DataSpec:
    name: str                                   # a `vidgen.data.get_dataset` name
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    extra: list[DataSpec] = dataclasses.field(default_factory=list)  # concatenated after the first

    def build(self, **forced: Any) -> torch.utils.data.Dataset:
        """The dataset (all parts concatenated). `forced` options (e.g. split="train") override each
        part's options where that dataset takes them (a folder dataset has no split)."""
        from vidgen.data import DATASETS, get_dataset

        parts = []
        for spec in [self, *self.extra]:
            takes = inspect.signature(DATASETS[spec.name].__init__).parameters
            parts.append(get_dataset(spec.name, **{**spec.options,
                                                   **{k: v for k, v in forced.items() if k in takes}}))
        return parts[0] if len(parts) == 1 else torch.utils.data.ConcatDataset(parts)

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, **self.options}
        if self.extra:
            out["extra"] = [spec.to_dict() for spec in self.extra]
        return out


@dataclasses.dataclass
class OutputSpec:
    dir: str


@dataclasses.dataclass
class Recipe:
    kind: str
    model: ModelSpec
    data: DataSpec
    train: TrainConfig
    output: OutputSpec
    sections: dict[str, Any]                    # the kind's own tables, as its dataclasses
    description: str = ""
    name: str = "recipe"                        # the file's stem
    source: str = "<string>"                    # where it was read from

    @property
    def run_dir(self) -> Path:
        return Path(self.output.dir)

    def to_dict(self) -> dict[str, Any]:
        """The fully resolved recipe (defaults filled in), JSON-able; saved as run_dir/recipe.json."""
        return {
            "kind": self.kind,
            "name": self.name,  # so an export from the run folder knows which recipe made it
            "description": self.description,
            "model": {"size": self.model.size, **self.model.overrides},
            "data": self.data.to_dict(),
            "train": dataclasses.asdict(self.train),
            "output": dataclasses.asdict(self.output),
            **{name: value if isinstance(value, dict) else dataclasses.asdict(value)
               for name, value in self.sections.items()},
        }


# ----------------------------------------------------------------------------- kinds


@dataclasses.dataclass
class BuildContext:
    run_dir: Path
    device: torch.device
    resume: bool
    progress: bool
    log: Callable[[str], None]


@dataclasses.dataclass
class TrainingSetup:
    """What a kind's builder returns: everything `Trainer` needs."""

    model: nn.Module
    objective: Objective
    dataset: Any
    collate_fn: Callable[[Sequence[Any]], Any] | None = None
    sample_fn: SampleHook | None = None
    eval_fn: EvalHook | None = None
    export_fn: ExportHook | None = None
    keep_steps: tuple[int, ...] = ()  # checkpoints the export reads besides the latest (never pruned)


@dataclasses.dataclass
class RecipeKind:
    """A registry entry: how to turn a recipe into a `TrainingSetup`.

    sizes:    () -> {size name: constructor(**config overrides) -> model}; imported lazily.
    sections: the kind's own recipe tables, name -> dataclass (every field needs a default), or
              `dict` for a free-form table that the builder validates itself.
    build:    (recipe, context) -> TrainingSetup.
    resumable_changes: keys of the kind's tables that may change on --resume (e.g. "sample.").
    """

    name: str
    description: str
    sizes: Callable[[], Mapping[str, Callable[..., nn.Module]]]
    build: Callable[[Recipe, BuildContext], TrainingSetup]
    sections: Mapping[str, type] = dataclasses.field(default_factory=dict)
    resumable_changes: tuple[str, ...] = ()


KINDS: dict[str, RecipeKind] = {}
# Modules that register the built-in kinds when imported (imported on first use: they pull in models).
_KIND_MODULES = ("vidgen.training.cogvideox", "vidgen.training.magvit_tokenizer",
                 "vidgen.training.magvit_transformer")
_loaded = False


def register_kind(kind: RecipeKind) -> RecipeKind:
    KINDS[kind.name] = kind
    return kind


def _load_kinds() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _KIND_MODULES:
            importlib.import_module(module)


def get_kind(name: str) -> RecipeKind:
    _load_kinds()
    if name not in KINDS:
        raise VidgenError(f"unknown recipe kind {name!r}; available kinds: {', '.join(sorted(KINDS))}")
    return KINDS[name]


def list_kinds() -> list[RecipeKind]:
    _load_kinds()
    return [KINDS[k] for k in sorted(KINDS)]


# ----------------------------------------------------------------------------- parsing


def shipped_recipes() -> list[Path]:
    return sorted(RECIPES_DIR.glob("*.toml"), key=lambda p: p.stem) if RECIPES_DIR.is_dir() else []


def resolve_recipe_path(name_or_path: str | Path) -> Path:
    """A path to a TOML file, or the name of a shipped recipe (with or without `.toml`)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    stem = path.name.removesuffix(".toml")
    shipped = RECIPES_DIR / f"{stem}.toml"
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    names = ", ".join(p.stem for p in shipped_recipes()) or "(none)"
    raise VidgenError(f"recipe {str(name_or_path)!r} is neither a TOML file nor a shipped recipe; "
                      f"shipped recipes: {names}")


def load_recipe(name_or_path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """Read a recipe file (or shipped recipe name) and apply `--set`-style overrides."""
    path = resolve_recipe_path(name_or_path)
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise VidgenError(f"recipe {path} is not valid TOML: {error}") from None
    return parse_recipe(table, name=path.stem, source=str(path), overrides=overrides)


def parse_override(text: str) -> tuple[list[str], Any]:
    """"train.lr=1e-4" -> (["train", "lr"], 1e-4). The value is read as TOML, else kept as a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise VidgenError(f"--set {text!r}: expected SECTION.KEY=VALUE, e.g. train.lr=1e-4")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.split("."), value


def apply_overrides(table: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    table = json.loads(json.dumps(table))  # a deep copy (TOML values are JSON-able)
    for text in overrides:
        path, value = parse_override(text)
        target = table
        for part in path[:-1]:
            node = target.setdefault(part, {})
            if not isinstance(node, dict):
                raise VidgenError(f"--set {text!r}: {part!r} is a value, not a table")
            target = node
        target[path[-1]] = value
    return table


def parse_recipe(table: Mapping[str, Any], name: str = "recipe", source: str = "<string>",
                 overrides: Sequence[str] = ()) -> Recipe:
    """Validate a recipe table (as read from TOML) into a `Recipe`."""
    table = apply_overrides(dict(table), overrides)
    where = f"recipe {source}"
    if "kind" not in table:
        raise VidgenError(f"{where}: missing `kind`; available kinds: {', '.join(k.name for k in list_kinds())}")
    kind = get_kind(_expect(table["kind"], str, "kind", where))
    allowed = list(TOP_LEVEL) + list(kind.sections)
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise VidgenError(f"{where}: unknown key(s) {', '.join(unknown)} for kind {kind.name!r}; "
                          f"allowed: {', '.join(allowed)}")
    for section in ("model", "data", "output"):
        if section not in table:
            raise VidgenError(f"{where}: missing the [{section}] table")

    model = _parse_model(kind, _table(table["model"], "model", where), where)
    data = _parse_data(_table(table["data"], "data", where), "data", where)
    train = parse_dataclass(TrainConfig, _table(table.get("train", {}), "train", where), "train", where)
    output = parse_dataclass(OutputSpec, _table(table["output"], "output", where), "output", where)
    sections = {name: _free_table(table.get(name, {}), name, where) if cls is dict else
                parse_dataclass(cls, _table(table.get(name, {}), name, where), name, where)
                for name, cls in kind.sections.items()}
    description = _expect(table.get("description", ""), str, "description", where)
    name = _expect(table.get("name", name), str, "name", where)
    return Recipe(kind=kind.name, model=model, data=data, train=train, output=output, sections=sections,
                  description=description, name=name, source=source)


def _table(value: Any, section: str, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise VidgenError(f"{where}: `{section}` must be a table ([{section}]), got {value!r}")
    return value


def _free_table(value: Any, section: str, where: str) -> dict[str, Any]:
    """A table that the kind validates itself (e.g. the keyword arguments of a loss)."""
    return dict(_table(value, section, where))


def _parse_model(kind: RecipeKind, table: dict[str, Any], where: str) -> ModelSpec:
    sizes = kind.sizes()
    if "size" not in table:
        raise VidgenError(f"{where}: [model] needs `size`; sizes of {kind.name!r}: {', '.join(sizes)}")
    size = _expect(table["size"], str, "model.size", where)
    if size not in sizes:
        raise VidgenError(f"{where}: model.size = {size!r} is not a size of {kind.name!r}; "
                          f"allowed: {', '.join(sizes)}")
    overrides = {k: v for k, v in table.items() if k != "size"}
    config_class = _config_class_of(sizes[size])
    if config_class is not None:
        fields = {f.name for f in dataclasses.fields(config_class)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise VidgenError(f"{where}: unknown model option(s) {', '.join('model.' + u for u in unknown)} for "
                              f"{config_class.__name__}; allowed: {', '.join(sorted(fields))}")
    return ModelSpec(size=size, overrides=overrides)


def _config_class_of(constructor: Callable[..., nn.Module]) -> type | None:
    try:
        model_class = typing.get_type_hints(constructor).get("return")
    except (NameError, TypeError, AttributeError):  # unresolvable annotation: build_model still checks
        return None
    return getattr(model_class, "config_class", None)


def _parse_data(table: dict[str, Any], section: str, where: str) -> DataSpec:
    if "name" not in table:
        raise VidgenError(f"{where}: [{section}] needs `name` (a dataset: shapes, digits, folder)")
    name = _expect(table["name"], str, f"{section}.name", where)
    extra_tables = table.get("extra", [])
    if not isinstance(extra_tables, list) or not all(isinstance(t, dict) for t in extra_tables):
        raise VidgenError(f"{where}: {section}.extra must be an array of tables ([[{section}.extra]])")
    extra = [_parse_data(t, f"{section}.extra", where) for t in extra_tables]
    options = {k: v for k, v in table.items() if k not in ("name", "extra")}
    from vidgen.data import DATASETS

    if name not in DATASETS:
        raise VidgenError(f"{where}: {section}.name = {name!r} is not a dataset; allowed: {', '.join(DATASETS)}")
    allowed = [p for p in inspect.signature(DATASETS[name].__init__).parameters if p not in ("self", "split")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise VidgenError(f"{where}: unknown option(s) {', '.join(f'{section}.{u}' for u in unknown)} for "
                          f"dataset {name!r}; allowed: {', '.join(allowed)}")
    return DataSpec(name=name, options=options, extra=extra)


def parse_dataclass(cls: type, table: Mapping[str, Any], section: str, where: str = "recipe") -> Any:
    """Build dataclass `cls` from a TOML table, checking keys and value types."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise VidgenError(f"{where}: unknown key(s) {', '.join(f'{section}.{u}' for u in unknown)}; "
                          f"[{section}] allows: {', '.join(fields)}")
    missing = sorted(name for name, f in fields.items() if name not in table
                     and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
    if missing:
        raise VidgenError(f"{where}: [{section}] is missing {', '.join(f'{section}.{m}' for m in missing)}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _coerce(value, hints[name], f"{section}.{name}", where) for name, value in table.items()}
    try:
        return cls(**kwargs)
    except VidgenError as error:
        raise VidgenError(f"{where}: {error}") from None
    except (TypeError, ValueError) as error:
        raise VidgenError(f"{where}: invalid [{section}]: {error}") from None


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _coerce(value: Any, annotation: Any, key: str, where: str) -> Any:
    """Check `value` against a dataclass field annotation (int, float, bool, str, X | None, list[X],
    tuple[X, ...], dict); ints are accepted for floats."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key, where)
            except VidgenError as error:
                errors.append(error)
        raise errors[0]
    if origin is typing.Literal:
        allowed = typing.get_args(annotation)
        if value not in allowed:
            raise VidgenError(f"{where}: {key} = {value!r} is not allowed; allowed: "
                              f"{', '.join(repr(a) for a in allowed)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise VidgenError(f"{where}: {key} = {value!r} must be an array ({_type_name(annotation)})")
        args = typing.get_args(annotation)
        item = args[0] if args else Any
        items = [value if item is Any else _coerce(v, item, f"{key}[{i}]", where) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise VidgenError(f"{where}: {key} = {value!r} must be a table")
        return value
    if annotation is Any:
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise VidgenError(f"{where}: {key} = {value!r} must be true or false")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise VidgenError(f"{where}: {key} = {value!r} must be an integer")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise VidgenError(f"{where}: {key} = {value!r} must be a number")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise VidgenError(f"{where}: {key} = {value!r} must be a string")
        return value
    return value


def _expect(value: Any, kind: type, key: str, where: str) -> Any:
    if not isinstance(value, kind):
        raise VidgenError(f"{where}: {key} = {value!r} must be a {kind.__name__}")
    return value


# ----------------------------------------------------------------------------- running


def build_model(recipe: Recipe, **forced: Any) -> nn.Module:
    """The recipe's model: its named size with the recipe's overrides (and `forced` ones, which the
    kind derives from elsewhere, e.g. the VAE's latent channels)."""
    kind = get_kind(recipe.kind)
    constructor = kind.sizes()[recipe.model.size]
    for key, value in forced.items():
        if key in recipe.model.overrides and recipe.model.overrides[key] != value:
            raise VidgenError(f"recipe {recipe.source}: model.{key} = {recipe.model.overrides[key]!r} "
                              f"contradicts {value!r}, which this kind derives itself; remove model.{key}")
    try:
        return constructor(**{**recipe.model.overrides, **forced})
    except TypeError as error:
        raise VidgenError(f"recipe {recipe.source}: cannot build model size {recipe.model.size!r} with "
                          f"{recipe.model.overrides}: {error}") from None


def freeze_trained_part(recipe: Recipe, context: BuildContext, option: str, what: str,
                        modules: Sequence[nn.Module]) -> None:
    """Freeze one side (`modules`, described as `what`) of an autoencoder for a fine-tune of the other:
    the encoder for a decoder-only fine-tune (its latents or tokens stay bit-identical), or the decoder
    for an encoder-only one. A random part would stay random, so the run must start from trained weights
    (`train.init_from`) or resume; `option` names the recipe switch."""
    if not recipe.train.init_from and not context.resume:
        raise VidgenError(f"{option} = true freezes {what}: start from a trained model with train.init_from = "
                          f"<its folder or bundled name> (a random {what} would stay random)")
    for module in modules:
        module.requires_grad_(False)


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


def recipe_changes(old: Mapping[str, Any], new: Mapping[str, Any], allowed: Sequence[str] = ()) -> list[str]:
    """Keys whose values differ between two resolved recipes, except those matching `allowed`
    prefixes; as "key: old -> new" strings."""
    a, b = _flatten(json.loads(json.dumps(old))), _flatten(json.loads(json.dumps(new)))
    free = tuple(RESUMABLE_CHANGES) + tuple(allowed)
    changes = []
    for key in sorted(set(a) | set(b)):
        if a.get(key, "<unset>") != b.get(key, "<unset>") and not any(
                key == p or (p.endswith(".") and key.startswith(p)) for p in free):
            changes.append(f"{key}: {a.get(key, '<unset>')!r} -> {b.get(key, '<unset>')!r}")
    return changes


def run_recipe(recipe: Recipe, resume: bool = False, progress: bool = True,
               log: Callable[[str], None] = print, stop_at: int | None = None) -> TrainResult:
    """Train what `recipe` describes, into `recipe.output.dir` (`stop_at`: pause after that step, see `Trainer`)."""
    kind = get_kind(recipe.kind)
    run_dir = recipe.run_dir
    resolved = recipe.to_dict()
    saved_path = run_dir / RECIPE_FILE
    if resume:
        if not saved_path.is_file():
            raise VidgenError(f"cannot resume: {run_dir} has no {RECIPE_FILE} (was it trained with this recipe?)")
        saved = read_json(saved_path)
        changes = recipe_changes(saved, resolved, kind.resumable_changes)
        if changes:
            raise VidgenError(
                f"cannot resume {run_dir}: the recipe changed in ways the checkpoint cannot follow:\n  "
                + "\n  ".join(changes)
                + "\nrestore these values (or pass them with --set), or start a new run with another --output")
    from vidgen.training.trainer import resolve_device

    device = resolve_device(recipe.train.device)
    context = BuildContext(run_dir=run_dir, device=device, resume=resume, progress=progress, log=log)
    # The model's initial weights depend only on the recipe's seed.
    torch.manual_seed(recipe.train.seed)
    setup = kind.build(recipe, context)
    if recipe.train.init_from and not resume:  # on resume the checkpoint holds the weights
        from vidgen.training.checkpoint import initialise_from

        source = initialise_from(setup.model, recipe.train.init_from, grow=recipe.train.init_grow)
        log(f"initial weights: {source} (train.init_from" + (", grown: added blocks start as the identity)"
                                                              if recipe.train.init_grow else ")"))
    trainer = Trainer(setup.model, setup.objective, setup.dataset, recipe.train, run_dir,
                      collate_fn=setup.collate_fn, sample_fn=setup.sample_fn, eval_fn=setup.eval_fn,
                      export_fn=setup.export_fn, resume=resume, progress=progress, log_fn=log,
                      keep_steps=setup.keep_steps, stop_at=stop_at)
    write_json(saved_path, resolved)
    return trainer.train()


def export_checkpoint(run_dir: str | Path, step: int | None = None, output: str | Path | None = None,
                      raw: bool = False, device: str = "cpu", log: Callable[[str], None] = print,
                      overrides: Sequence[str] = ()) -> Path:
    """Export one checkpoint of a run as the run's final export would (pipeline folder and all), without
    training: to try a model at step N while the run goes on, or after it was stopped.

    run_dir: a run folder (its recipe.json and checkpoints/ are read; caches there are reused, not rebuilt).
    step:    the checkpoint's step (None = the latest).
    output:  where to write (default run_dir/exports/step_NNNNNNNN); it gets what the recipe's export
             writes (final/, and pipeline/ for the kinds that make one) plus export.json (run, step, weights).
    raw:     the raw weights instead of the EMA weights (the EMA ones are used when the run keeps them and
             its train.export is "ema", as at the end of training).
    overrides: "section.key=value" changes to the run's recipe for this export, limited to what a --resume
             may change (e.g. [sample] defaults, [autoguidance], a decoder-only VAE); others are refused.
    Returns the exported folder (the pipeline folder when the kind writes one).
    """
    from vidgen.training.checkpoint import checkpoint_dirs
    from vidgen.training.trainer import load_checkpoint_weights, resolve_device, write_final

    run_dir = Path(run_dir)
    saved_path = run_dir / RECIPE_FILE
    if not saved_path.is_file():
        raise VidgenError(f"{run_dir} is not a training run folder (no {RECIPE_FILE}); give the --output folder "
                          f"of a `vidgen train` run")
    checkpoints = dict(checkpoint_dirs(run_dir / "checkpoints"))
    if not checkpoints:
        raise VidgenError(f"{run_dir} has no checkpoints (looked in {run_dir / 'checkpoints'})")
    if step is None:
        step = max(checkpoints)
    if step not in checkpoints:
        raise VidgenError(f"{run_dir} has no checkpoint of step {step}; it has steps {sorted(checkpoints)} "
                          f"(older ones are pruned: train.keep_checkpoints)")
    saved = read_json(saved_path)
    recipe = parse_recipe(saved, name=run_dir.name, source=str(saved_path),
                          overrides=[*overrides, f"output.dir={json.dumps(str(run_dir))}"])
    kind = get_kind(recipe.kind)
    changes = recipe_changes(saved, recipe.to_dict(), kind.resumable_changes)
    if changes:
        raise VidgenError("--set may only change what a resumed run may change; not:\n  " + "\n  ".join(changes))
    context = BuildContext(run_dir=run_dir, device=resolve_device(device), resume=True, progress=False, log=log)
    torch.manual_seed(recipe.train.seed)
    setup = kind.build(recipe, context)
    model = setup.model.to(context.device).eval()
    use_ema = load_checkpoint_weights(model, checkpoints[step], recipe.train, raw=raw)
    destination = Path(output) if output is not None else run_dir / "exports" / f"step_{step:08d}"
    destination.mkdir(parents=True, exist_ok=True)
    exported = write_final(model, destination, recipe.train, setup.export_fn)
    write_json(destination / "export.json", {"run": str(run_dir.resolve()), "checkpoint": checkpoints[step].name,
                                             "step": step, "weights": "ema" if use_ema else "raw"})
    log(f"exported step {step} ({'EMA' if use_ema else 'raw'} weights) of {run_dir} -> {exported}")
    return exported
