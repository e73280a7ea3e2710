"""Training configurations: typed dataclasses read from and written to YAML, and the recipes and
accelerate configs the package ships.

A YAML file mirrors the dataclass tree (`data:`, `lora:` are nested sections); unknown keys are
errors, so a typo never silently trains with a default. `--set key=value` on the command line
overrides any field (`--set data.seed=3`, `--set max_steps=200`).

A config may be written as changes to another: `base: NAME` starts from a packaged recipe, and
`base: FILE.yaml` from a file (relative to the config's own folder). The config is laid over its
base: a mapping (`data:`, `data.kwargs:`, `lora:`) merges key by key, recursively; any other
value, a list such as `mixture` included, replaces the base's whole. A base may have a base;
`--set` applies to the result.

Packaged recipes are the files of `train/recipes/`, named by their stem: `--config
nano_ladder6_shapes` works from any folder, once installed. A config given with a slash or a
`.yaml`/`.yml` ending is a path; anything else is a recipe name.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError, MissingInputError

NANO_INIT = "nano-init"  # `model:` value that starts from a freshly initialised nano model
RECIPES = Path(__file__).parent / "recipes"
ACCELERATE_CONFIGS = Path(__file__).parent / "accelerate"


@dataclass
class DataConfig:
    """Where conversations come from: `factory(**kwargs)` returns an indexable endless source
    (item i a conversation with image, task, prompt, answer, ...), pure in (seed, i) so a resumed
    run continues at the index where it stopped."""

    factory: str = "rexomni_core.data.samplers:ConversationStream"
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self, **overrides: Any):
        module_name, _, name = self.factory.partition(":")
        if not name:
            raise InputError(f"data.factory must be 'module:callable', got {self.factory!r}")
        factory = getattr(importlib.import_module(module_name), name)
        return factory(**{**self.kwargs, **overrides})


@dataclass
class LoraSettings:
    """LoRA through peft on the language model's projections; r = 0 trains every weight."""

    r: int = 0
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


class YamlConfig:
    """Read from and written to YAML; nested dataclass fields are nested sections.

    Values are checked as they are read (a boolean must be `true`/`false`, a count a whole
    number) and `check()` bounds the numbers, so a bad config stops before any folder is made.
    """

    POSITIVE: typing.ClassVar[tuple[str, ...]] = ()  # fields that must be > 0
    NON_NEGATIVE: typing.ClassVar[tuple[str, ...]] = ()  # fields that must be ≥ 0

    @classmethod
    def from_yaml(cls, recipe: str | Path, overrides: list[str] | None = None):
        """The config in a YAML file or packaged recipe (`recipe_path`), bases resolved, then
        each `key=value` of `overrides` (`--set`)."""
        import yaml

        path = recipe_path(recipe)
        raw = read_recipe(path)
        for item in overrides or []:
            key, sep, value = item.partition("=")
            if not sep:
                raise InputError(f"--set takes key=value, got {item!r}")
            node = raw
            *parents, leaf = key.split(".")
            for parent in parents:
                node = node.setdefault(parent, {})
            node[leaf] = yaml.safe_load(value)
        try:
            config = _from_dict(cls, raw)
            config.check()
        except InputError as error:
            raise InputError(f"{path}: {error}") from None
        return config

    def check(self) -> None:
        """Raise `InputError` for a number out of range (a config built in Python too)."""
        for name in self.POSITIVE + self.NON_NEGATIVE:
            value = getattr(self, name)
            if value is not None and (value <= 0 if name in self.POSITIVE else value < 0):
                bound = "> 0" if name in self.POSITIVE else "≥ 0"
                raise InputError(f"{type(self).__name__}.{name} must be {bound}, got {value!r}")

    def to_yaml(self, path: str | Path) -> None:
        import yaml

        Path(path).write_text(yaml.safe_dump(dataclasses.asdict(self), sort_keys=False))


@dataclass
class TrainingConfig(YamlConfig):
    """What every training stage takes; `training_arguments` (train/common.py) maps it onto the
    Trainer's arguments. Each stage gives its own defaults to the fields without one here."""

    POSITIVE = ("max_steps", "learning_rate", "logging_steps", "save_steps", "save_total_limit")

    output_dir: str
    model: str | None  # a directory or hub id; None: the shipped nano
    data: DataConfig
    max_steps: int
    learning_rate: float
    logging_steps: int
    save_steps: int
    save_total_limit: int
    lora: LoraSettings = field(default_factory=LoraSettings)
    resume: bool = True  # continue from the newest checkpoint in output_dir when there is one
    seed: int = 0
    bf16: bool = False  # bf16 autocast (GPUs, and CPUs with avx512_bf16 or AMX); weights stay fp32
    report_to: str = "none"


@dataclass
class SFTConfig(TrainingConfig):
    POSITIVE = TrainingConfig.POSITIVE + (
        "batch_size", "gradient_accumulation_steps", "square_side", "min_pixels", "max_pixels", "dense_batch_size"
    )
    NON_NEGATIVE = ("min_learning_rate_ratio", "warmup_steps", "weight_decay", "max_grad_norm", "coordinate_sigma",
                    "coordinate_radius", "attention_grounding", "dataloader_num_workers",
                    "vision_learning_rate_ratio", "probe_test_images", "dense_weight", "binding_readout")

    output_dir: str = "runs/sft"
    model: str | None = NANO_INIT  # here also "nano-init": a fresh nano model
    data: DataConfig = field(default_factory=DataConfig)
    max_steps: int = 1000
    learning_rate: float = 1e-3
    logging_steps: int = 10
    save_steps: int = 200
    save_total_limit: int = 3
    # With model "nano-init": overrides of the nano architecture, {"text": {...}, "vision": {...}}.
    nano_architecture: dict[str, dict[str, Any]] = field(default_factory=dict)
    batch_size: int = 16
    gradient_accumulation_steps: int = 1
    min_learning_rate_ratio: float = 0.1  # cosine decays to this share of the peak
    warmup_steps: int = 100
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    # Soft labels for coordinate targets: a Gaussian over neighbouring bins (in bins) instead of
    # one-hot, so a near miss costs less than a far one. 0 = plain cross-entropy.
    coordinate_sigma: float = 1.0
    coordinate_radius: int = 3
    # Attention grounding, an aid for training from scratch (see the nano model card): adds
    # weight × -log(attention mass of head 0 on the region's image tokens) at every position that
    # writes a coordinate, in each listed layer (None: all but the first). 0 turns it off.
    attention_grounding: float = 0.0
    attention_grounding_layers: list[int] | None = None
    # "first": only at the position writing each region's first coordinate, which has only the
    # phrase to find the region by (the model card's binding probe, eleventh session).
    attention_grounding_queries: str = "all"
    freeze_vision: bool = False
    # Resize every image to this square before the processor (nano: 112); saved in the
    # checkpoint's config.json, so prediction sees images as training did. None: keep the model's.
    square_side: int | None = None
    # The prompt before the image in the user turn (`RexOmni.prompt_first`, saved in config.json
    # like square_side); None keeps the model's order.
    prompt_first: bool | None = None
    min_pixels: int | None = None  # None: the processor's (released) bounds
    max_pixels: int | None = None
    dataloader_num_workers: int = 0
    # Recompute activations in the backward pass instead of keeping them: less memory (what a 3 B
    # model runs out of), slower steps.
    gradient_checkpointing: bool = False
    # "nf4": load the model in 4 bits through bitsandbytes and train LoRA over it (QLoRA; CUDA only).
    quantization: str | None = None
    # The vision tower's learning rate as a share of `learning_rate`: below 1 keeps what a
    # pre-trained tower sees (nano v3's stage 0) from being eroded by the next-token loss.
    vision_learning_rate_ratio: float = 1.0
    # The cell probe (nano/cell_probe.py) at every checkpoint, logged, so a collapse of the
    # visual tokens shows at once (0 test images: off; square views only).
    probe_test_images: int = 0
    # Batch conversations of one mixture entry together (a mixture stream's data only): a batch
    # pads to its longest answer, so mixing keypoint answers with pointing ones wastes most steps.
    batch_by_task: bool = False
    # Stage 0's dense loss kept beside the next-token loss (`train/vision.py` DenseAuxiliary):
    # `dense_weight` × the cell-target loss of `dense_batch_size` scenes from `dense_data` per
    # step through linear heads on the visual tokens (`dense_head_weights` as stage 0's
    # `head_weights`), dropped at the end. 0: off. Needs a square view.
    dense_weight: float = 0.0
    dense_batch_size: int = 8
    dense_data: DataConfig = field(default_factory=lambda: DataConfig(factory="rexomni_core.data.cell_targets:CellTargetStream"))
    dense_head_weights: dict[str, float] = field(default_factory=dict)
    # `binding_readout` × the binding readout's loss (`train/sft.py` BindingReadout: a linear
    # readout over the cells at each region's opening position must pick the region's cells),
    # dropped at the end. 0: off. Needs a square view (square_side, or the model's own).
    binding_readout: float = 0.0
    # Untie the output projection from the input embeddings before training (`train/sft.py`
    # untie_output_embeddings): the model card's fourteenth session found the coordinates a tied
    # nano writes carry less of the retrieval than its hidden state holds. Saved in config.json.
    untie_embeddings: bool = False

    def check(self) -> None:
        super().check()
        if self.quantization not in (None, "nf4"):
            raise InputError(f"SFTConfig.quantization must be nf4 or null, got {self.quantization!r}")
        if self.quantization and self.lora.r <= 0:
            raise InputError("SFTConfig.quantization trains LoRA over frozen 4-bit weights: set lora.r > 0")
        if self.dense_weight > 0 and (self.lora.r > 0 or self.freeze_vision):
            raise InputError("SFTConfig.dense_weight trains the vision tower on cell targets: it needs full "
                             "training (no LoRA) and freeze_vision off")
        if self.attention_grounding_queries not in ("all", "first"):
            raise InputError("SFTConfig.attention_grounding_queries is 'all' or 'first', "
                             f"got {self.attention_grounding_queries!r}")


@dataclass
class VisionConfig(TrainingConfig):
    """Stage 0, vision pre-training (`train/vision.py`): the vision tower and merger trained on
    per-cell targets of scenes from `data` (a `CellTargetStream`), the language model untouched."""

    POSITIVE = TrainingConfig.POSITIVE + ("batch_size", "square_side")
    NON_NEGATIVE = ("min_learning_rate_ratio", "warmup_steps", "weight_decay", "max_grad_norm", "background_weight",
                    "probe_train_images", "probe_test_images", "dataloader_num_workers")

    output_dir: str = "runs/vision"
    model: str | None = NANO_INIT
    data: DataConfig = field(default_factory=lambda: DataConfig(factory="rexomni_core.data.cell_targets:CellTargetStream"))
    max_steps: int = 2000
    learning_rate: float = 1e-3
    logging_steps: int = 20
    save_steps: int = 250
    save_total_limit: int = 2
    nano_architecture: dict[str, dict[str, Any]] = field(default_factory=dict)
    square_side: int = 224
    batch_size: int = 16
    min_learning_rate_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    # Loss weight of each head (category, colour, shape, char, box, centre, keypoints; 1 when
    # not listed) and of background cells against object cells in the class heads.
    head_weights: dict[str, float] = field(default_factory=dict)
    background_weight: float = 0.3
    # Which object cells the shape head is asked about: "owned" (every cell an object owns) or
    # "centre" (each object's centre cell only: the shape seen from the whole object).
    shape_cells: str = "owned"
    # The cell probe run at the start and at every checkpoint (0 test images: none).
    probe_train_images: int = 200
    probe_test_images: int = 100
    dataloader_num_workers: int = 0

    def check(self) -> None:
        super().check()
        if self.shape_cells not in ("owned", "centre"):
            raise InputError(f"VisionConfig.shape_cells is 'owned' or 'centre', got {self.shape_cells!r}")
        if self.square_side % 28:
            raise InputError(f"VisionConfig.square_side must be a multiple of 28 (whole image tokens), got {self.square_side}")


@dataclass
class GRPOConfig(TrainingConfig):
    """GRPO after SFT: prompts from the data engines (by default the dense shapes split, where the
    paper saw duplicates), `num_generations` completions per prompt, KL weight `beta`."""

    POSITIVE = TrainingConfig.POSITIVE + (
        "num_prompts", "prompts_per_step", "num_generations", "temperature", "max_completion_length"
    )
    NON_NEGATIVE = ("beta", "format_weight")

    output_dir: str = "runs/grpo"
    model: str | None = None
    data: DataConfig = field(
        default_factory=lambda: DataConfig(
            kwargs={"mixture": [{"world": "shapes", "task": "detection", "split": "dense"}], "seed": 7}
        )
    )
    max_steps: int = 200
    learning_rate: float = 1e-5
    logging_steps: int = 5
    save_steps: int = 50
    save_total_limit: int = 2
    num_prompts: int = 1024  # prompts drawn from the data source (the first N of the stream)
    prompts_per_step: int = 2
    num_generations: int = 8  # the group whose rewards are compared
    beta: float = 0.04  # KL weight toward the starting model
    temperature: float = 1.0
    max_completion_length: int = 512
    format_weight: float = 0.1  # weight of the format reward beside the task reward (weight 1)


# Each training stage: its config and the function that runs one ("module:function", imported
# when called: the trainers pull in torch and transformers).
STAGES: dict[str, tuple[type[TrainingConfig], str]] = {
    "vision": (VisionConfig, "rexomni_core.train.vision:train_vision"),
    "sft": (SFTConfig, "rexomni_core.train.sft:train_sft"),
    "grpo": (GRPOConfig, "rexomni_core.train.grpo:train_grpo"),
}


def run_stage(stage: str, config: TrainingConfig):
    """Train `config` with `stage`'s trainer; returns the final model's directory."""
    module_name, _, name = STAGES[stage][1].partition(":")
    return getattr(importlib.import_module(module_name), name)(config)


def recipe_names() -> list[str]:
    """The names of the packaged recipes (`--config NAME`)."""
    return _packaged_names(RECIPES)


def recipe_path(recipe: str | Path) -> Path:
    """The file `recipe` stands for: a packaged recipe's name (`nano_ladder6_shapes`) or a path."""
    return Path(recipe) if _is_path(recipe) else _packaged(RECIPES, str(recipe), "recipe")


def accelerate_config(name: str) -> Path:
    """The packaged `accelerate launch --config_file` for `name` (`zero2`: DeepSpeed, `fsdp`)."""
    return _packaged(ACCELERATE_CONFIGS, name, "accelerate config")


def read_recipe(recipe: str | Path) -> dict[str, Any]:
    """The mapping of fields a config file or packaged recipe stands for, its bases laid under it."""
    return _resolved(recipe_path(recipe), chain=())


def _is_path(recipe: str | Path) -> bool:
    text = str(recipe)
    return isinstance(recipe, Path) or "/" in text or text.endswith((".yaml", ".yml"))


def _packaged_names(folder: Path) -> list[str]:
    return sorted(path.stem for path in folder.glob("*.yaml"))


def _packaged(folder: Path, name: str, kind: str) -> Path:
    path = folder / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(_packaged_names(folder))
        raise InputError(f"no packaged {kind} named {name!r} (a path needs a '/' or a .yaml ending); known: {known}")
    return path


def _resolved(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise MissingInputError(f"no config file at {path}")
    if path.resolve() in chain:
        raise InputError(f"{path}: its bases come back to it: {' -> '.join(map(str, chain + (path,)))}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise InputError(f"{path}: not valid YAML ({' '.join(str(error).split())})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: a config is a mapping of field: value, got {type(raw).__name__}")
    base = raw.pop("base", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise InputError(f"{path}: base is a recipe name or a .yaml path, got {base!r}")
    base_path = path.parent / base if _is_path(base) else recipe_path(base)
    return _laid_over(_resolved(base_path, chain + (path.resolve(),)), raw)


def _laid_over(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`changes` over `base`: mappings merge key by key; any other value (a list too) replaces."""
    merged = dict(base)
    for key, value in changes.items():
        both_mappings = isinstance(value, dict) and isinstance(base.get(key), dict)
        merged[key] = _laid_over(base[key], value) if both_mappings else value
    return merged


def _from_dict(cls, raw: dict):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(raw) - set(fields)
    if unknown:
        raise InputError(f"unknown {cls.__name__} keys: {sorted(unknown)}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in raw.items():
        nested = _section_type(fields[name])
        if nested and not isinstance(value or {}, dict):
            raise InputError(f"{cls.__name__}.{name} is a section of fields, got {value!r}")
        values[name] = _from_dict(nested, value or {}) if nested else _typed(cls, name, hints[name], value)
    return cls(**values)


def _typed(cls, name: str, hint: Any, value: Any) -> Any:
    """`value` as the bool, float or int the field holds. YAML 1.1 reads `3e-5` (no dot) as a
    string, which would otherwise reach the optimiser as text; `bf16: maybe` is a string too,
    which Python would take as true."""
    allowed = set(typing.get_args(hint) or (hint,))
    if value is None and type(None) in allowed:
        return value
    if bool in allowed:
        if not isinstance(value, bool):
            raise InputError(f"{cls.__name__}.{name}: expected true or false, got {value!r}")
        return value
    wanted = {float, int} & allowed
    if not wanted or not isinstance(value, (str, int, float)):
        return value
    if isinstance(value, bool):
        raise InputError(f"{cls.__name__}.{name}: expected a number, got {value!r}")
    number_type = float if float in wanted else int
    try:
        number = float(value)
    except ValueError:
        raise InputError(f"{cls.__name__}.{name}: expected a number, got {value!r}") from None
    if number_type is int and not number.is_integer():
        raise InputError(f"{cls.__name__}.{name}: expected a whole number, got {value!r}")
    return number_type(number)


def _section_type(config_field: dataclasses.Field) -> type | None:
    """The dataclass a field holds when it is a nested section (`data:`, `lora:`), else None."""
    if config_field.default_factory is dataclasses.MISSING:
        return None
    default = config_field.default_factory()
    return type(default) if dataclasses.is_dataclass(default) else None
