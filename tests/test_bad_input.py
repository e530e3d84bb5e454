"""Bad input: exactly one `error: <problem>; <fix>` line on stderr, exit status 2, and no file touched.

One table of bad inputs runs the real recipes in-process through `run_recipe` (the command line's own wrapper); a few
run as real `python recipes/<x>.py` commands. Inputs that must work (16-bit PNGs, EXIF-rotated JPEGs, rare string
labels) are checked against a reference instead.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, load_recipe, tiny_image_args, tiny_text_args

from hftransfer.outputs import run_recipe


# ---------------------------------------------------------------- the world a case runs in


@dataclass
class World:
    tmp: Path
    timm: Path
    bert: Path
    monkeypatch: pytest.MonkeyPatch
    out: Path | None = None  # --output_dir: tmp/out unless a case points it elsewhere

    def __post_init__(self):
        self.out = self.out or self.tmp / "out"

    def file(self, name: str, text: str) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def csv(self, name: str, rows: list[tuple], header: str = "text,label") -> str:
        return str(self.file(name, header + "\n" + "".join(",".join(map(str, row)) + "\n" for row in rows)))

    def texts(self, labels: list, name: str = "data.csv") -> str:
        return self.csv(name, [(f"text number {i}", label) for i, label in enumerate(labels)])

    def image_folder(self, layout: dict[str, dict[str, int]], name: str = "pets") -> str:
        """{split: {class: count}} -> an imagefolder of small random PNGs."""
        rng = np.random.default_rng(0)
        root = self.tmp / name
        for split, classes in layout.items():
            for label, count in classes.items():
                (root / split / label).mkdir(parents=True)
                for i in range(count):
                    pixels = rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)
                    Image.fromarray(pixels).save(root / split / label / f"{i}.png")
        return str(root)

    def user_folder(self, path: Path) -> Path:
        """A folder of the user's own files (they must survive every failed run byte for byte)."""
        (path / "notes").mkdir(parents=True, exist_ok=True)
        (path / "notes" / "todo.txt").write_text("my own notes\n")
        (path / "weights.bin").write_bytes(bytes(range(256)))
        return path

    def locked(self, path: Path) -> Path:
        """A folder the run may not write to (root ignores permission bits, so os.access is told so)."""
        path.mkdir(parents=True, exist_ok=True)
        real_access = os.access
        self.monkeypatch.setattr(
            os, "access", lambda p, mode, **kw: False if Path(p) == path else real_access(p, mode, **kw)
        )
        return path

    def image(self, *extra: str) -> list[str]:
        return tiny_image_args(self.timm, self.out, *extra)

    def text(self, *extra: str) -> list[str]:
        return tiny_text_args(self.bert, self.out, *extra)

    def domain(self, *extra: str) -> list[str]:
        return [
            "--model", str(self.timm), "--source", "digits", "--target", "digits", "--image_size", "32",
            "--max_train_samples", "48", "--max_eval_samples", "32", "--num_train_epochs", "1",
            "--per_device_train_batch_size", "16", "--dataloader_num_workers", "0",
            "--output_dir", str(self.out), "--min_train_steps", "0", *extra,
        ]


@dataclass(frozen=True)
class Case:
    id: str
    recipe: str  # image_cls, text_cls or domain_adapt
    argv: Callable[[World], list[str]]
    phrases: tuple[str, ...]


def case(id: str, recipe: str, argv: Callable[[World], list[str]], *phrases: str) -> Case:
    return Case(id, recipe, argv, phrases)


def image(*extra: str):
    return lambda w: w.image(*extra)


def text(*extra: str):
    return lambda w: w.text(*extra)


def domain(*extra: str):
    return lambda w: w.domain(*extra)


def at_user_folder(build):
    """The same case with --output_dir at an existing folder of the user's own files."""
    def argv(w: World) -> list[str]:
        w.out = w.user_folder(w.tmp / "my_project")
        return build(w)

    return argv


def into_empty_folder(build):
    """The same case with --output_dir at an existing empty folder (it must still be there, empty, afterwards)."""
    def argv(w: World) -> list[str]:
        w.out = w.tmp / "empty_out"
        w.out.mkdir()
        return build(w)

    return argv


def yaml_config(content: str, *extra: str):
    return lambda w: ["--config", str(w.file("run.yaml", content)), *w.image(*extra)]


def output_at(make_path: Callable[[World], Path]):
    def argv(w: World) -> list[str]:
        w.out = make_path(w)
        return w.image()

    return argv


def text_data(make_dataset: Callable[[World], str], *extra: str):
    return lambda w: w.text("--dataset", make_dataset(w), *extra)


def image_data(make_dataset: Callable[[World], str], *extra: str):
    return lambda w: w.image("--dataset", make_dataset(w), *extra)


def split_texts(w: World, train: list, **others: list) -> str:
    """A folder with train.csv and the given other splits (validation=..., test=...)."""
    for split, labels in {"train": train, **others}.items():
        w.texts(labels, name=f"splits/{split}.csv")
    return str(w.tmp / "splits")


STREAM = ("--streaming", "--max_steps", "2", "--class_names", "0,1")


def streamable_texts(w: World) -> str:
    return split_texts(w, [0, 1] * 10, validation=[0, 1], test=[0, 1])


def blank_text_in_test(w: World) -> str:
    folder = split_texts(w, [0, 1] * 10)
    w.csv("splits/test.csv", [("   ", 0), ("fine", 1)])
    return folder


def image_paths_csv(w: World) -> str:
    folder = Path(w.image_folder({"train": {"cat": 4, "dog": 4}}))
    rows = [(str(p), p.parent.name) for p in sorted(folder.rglob("*.png"))]
    return w.csv("images.csv", rows, header="path,label")


CASES = [
    # ---- item 6: names checked against the registries, with the closest suggested
    case("strategy_typo", "image_cls", image("--strategy", "ful"), "unknown --strategy 'ful'", "did you mean 'full'"),
    case("strategy_typo_text", "text_cls", text("--strategy", "linear-probe"), "did you mean 'linear_probe'"),
    case("method_typo", "domain_adapt", domain("--method", "dnn"), "unknown --method 'dnn'", "did you mean 'dann'"),
    case("method_is_a_regularizer", "domain_adapt", domain("--method", "l2sp"), "is a regularizer",
         "--regularizer l2sp"),
    case("regularizer_typo", "image_cls", image("--regularizer", "l2sq"), "unknown --regularizer 'l2sq'", "'l2sp'"),
    case("regularizer_second_typo", "image_cls", image("--regularizer", "l2sp,bbs"), "unknown --regularizer 'bbs'",
         "'bss'"),
    case("regularizer_needs_target", "image_cls", image("--regularizer", "mmd"), "needs target-domain data"),
    case("unknown_optim", "image_cls", image("--optim", "adamw_torh"), "unknown --optim 'adamw_torh'", "adamw_torch"),
    case("unfreeze_unit_typo", "image_cls", image("--strategy", "gradual", "--unfreeze_unit", "epochs"),
         "unknown --unfreeze_unit 'epochs'", "did you mean 'epoch'"),
    case("norm_statistics_typo", "image_cls", image("--norm_statistics", "pretrain"), "did you mean 'pretrained'"),
    case("head_init_typo", "text_cls", text("--head_init", "fitted"), "unknown --head_init 'fitted'", "'fit'"),
    case("pooling_without_sentence_config", "text_cls", text("--pooling", "checkpoint"),
         "reads a sentence-transformers pooling config", "drop --pooling"),
    case("pooling_on_an_image_model", "image_cls", image("--pooling", "checkpoint"), "text models", "drop it"),
    case("head_fit_c_zero", "image_cls", image("--head_fit_c", "0"), "--head_fit_c must be a positive number"),
    case("step_schedule_gamma", "image_cls", image("--lr_scheduler_type", "step", "--lr_scheduler_kwargs",
                                                   '{"gamma": 2}'), "gamma must be in (0, 1]"),
    case("select_on_typo", "domain_adapt", domain("--select_on", "targte"), "unknown --select_on", "'target'"),
    case("eval_strategy_typo", "image_cls", image("--eval_strategy", "epochs"), "unknown --eval_strategy", "'epoch'"),
    case("metric_typo", "image_cls", image("--metric_for_best_model", "acuracy"), "did you mean 'accuracy'"),
    case("unknown_flag", "image_cls", image("--learning_rat", "0.1"), "unrecognised arguments: --learning_rat"),
    # ---- item 6: numbers out of range
    case("train_batch_zero", "image_cls", at_user_folder(image("--per_device_train_batch_size", "0")),
         "--per_device_train_batch_size 0", "at least 1"),
    case("eval_batch_negative", "text_cls", text("--per_device_eval_batch_size", "-8"),
         "--per_device_eval_batch_size -8"),
    case("learning_rate_negative", "image_cls", image("--learning_rate", "-0.001"), "--learning_rate -0.001",
         "positive"),
    case("learning_rate_not_a_number", "image_cls", image("--learning_rate", "abc"), "--learning_rate", "'abc'"),
    case("gradient_accumulation_zero", "image_cls", at_user_folder(image("--gradient_accumulation_steps", "0")),
         "--gradient_accumulation_steps 0"),
    case("validation_size_one", "image_cls", image("--validation_size", "1"), "--validation_size 1.0",
         "between 0 and 1"),
    case("validation_size_negative", "text_cls", text("--validation_size", "-0.1"), "--validation_size -0.1"),
    case("test_size_zero", "image_cls", image("--test_size", "0"), "--test_size 0.0"),
    case("test_size_above_one", "text_cls", text("--test_size", "1.5"), "--test_size 1.5"),
    case("epochs_zero", "image_cls", image("--num_train_epochs", "0"), "--num_train_epochs 0", "trains nothing"),
    case("epochs_negative", "text_cls", text("--num_train_epochs", "-1"), "--num_train_epochs -1", "trains nothing"),
    case("max_steps_zero", "image_cls", image("--max_steps", "0"), "--max_steps 0 trains nothing"),
    case("max_train_samples_zero", "image_cls", image("--max_train_samples", "0"), "--max_train_samples 0"),
    case("max_train_samples_negative", "text_cls", text("--max_train_samples", "-5"), "--max_train_samples -5"),
    case("max_eval_samples_negative", "image_cls", image("--max_eval_samples", "-1"), "--max_eval_samples -1"),
    case("samples_per_class_zero", "image_cls", image("--samples_per_class", "0"), "--samples_per_class 0"),
    case("samples_per_class_negative", "text_cls", text("--samples_per_class", "-3"), "--samples_per_class -3"),
    case("image_size_zero", "image_cls", at_user_folder(image("--image_size", "0")), "--image_size 0"),
    case("image_size_negative", "domain_adapt", domain("--image_size", "-32"), "--image_size -32"),
    case("max_length_zero", "text_cls", text("--max_length", "0"), "--max_length 0"),
    case("max_length_negative", "text_cls", text("--max_length", "-64"), "--max_length -64"),
    case("hflip_above_one", "image_cls", image("--hflip", "1.5"), "--hflip 1.5", "between 0 and 1"),
    case("crop_scale_min_zero", "image_cls", image("--crop_scale_min", "0"), "--crop_scale_min 0.0"),
    case("lora_rank_zero", "image_cls", image("--strategy", "lora", "--lora_r", "0"), "--lora_r 0", "at least 1"),
    case("lora_dropout_one", "text_cls", text("--strategy", "lora", "--lora_dropout", "1"), "--lora_dropout 1.0"),
    case("setfit_batch_size_zero", "text_cls", text("--strategy", "setfit", "--setfit_batch_size", "0"),
         "--setfit_batch_size", "at least 1"),
    case("setfit_on_images", "image_cls", image("--strategy", "setfit"), "--strategy setfit", "linear_probe or lp_ft"),
    case("setfit_learning_rate_zero", "text_cls", text("--strategy", "setfit", "--setfit_learning_rate", "0"),
         "--setfit_learning_rate must be positive"),
    case("head_lr_scale_negative", "image_cls", image("--head_lr_scale", "-10"), "--head_lr_scale -10.0"),
    case("layer_decay_above_one", "image_cls", image("--strategy", "llrd", "--layer_decay", "1.5"),
         "--layer_decay 1.5"),
    case("layer_decay_zero", "text_cls", text("--layer_decay", "0"), "--layer_decay 0.0"),
    case("unfreeze_every_zero", "image_cls", image("--strategy", "gradual", "--unfreeze_every", "0"),
         "--unfreeze_every"),
    case("regularizer_weight_negative", "image_cls", image("--regularizer", "l2sp", "--regularizer_weight", "-1"),
         "--regularizer_weight -1.0"),
    case("method_weight_negative", "domain_adapt", domain("--method_weight", "-0.5"), "--method_weight -0.5"),
    case("method_warmup_above_one", "domain_adapt", domain("--method_warmup", "2"), "--method_warmup 2.0"),
    case("wise_ft_alpha_not_finite", "image_cls", image("--wise_ft_alphas", "0.5", "nan"), "--wise_ft_alphas", "nan"),
    case("logging_steps_zero", "image_cls", image("--logging_steps", "0"), "--logging_steps"),
    case("flag_without_value", "image_cls", lambda w: [*w.image(), "--seed"], "--seed", "expected one argument"),
    case("bool_not_a_bool", "image_cls", image("--pretrained", "maybe"), "--pretrained", "maybe"),
    # ---- item 6: options of loss components
    case("method_options_bad_key", "domain_adapt", domain("--method_options", "hiden_dim=64"), "hiden_dim"),
    case("method_options_bad_value", "domain_adapt", domain("--method_options", "hidden_dim=big"), "'big'"),
    case("method_options_sets_weight", "domain_adapt", domain("--method_options", "weight=2"), "--method_weight"),
    case("method_options_with_source_only", "domain_adapt",
         domain("--method", "source_only", "--method_options", "gamma=1"),
         "--method_options", "source_only"),
    case("regularizer_options_bad_key", "image_cls", image("--regularizer", "l2sp", "--regularizer_options", "gamma=1"),
         "gamma"),
    case("regularizer_options_alone", "text_cls", text("--regularizer_options", "alpha=0.1"), "no --regularizer"),
    # ---- item 6: evaluation needed for best-model selection
    case("eval_strategy_no", "image_cls", image("--eval_strategy", "no"),
         "--eval_strategy no", "--load_best_model_at_end false"),
    case("eval_and_save_strategy_no", "text_cls", text("--eval_strategy", "no", "--save_strategy", "no"),
         "--eval_strategy no"),
    case("save_strategy_mismatch", "image_cls", image("--save_strategy", "steps"), "--save_strategy", "match"),
    # ---- item 6: output paths, checked without creating anything
    case("output_dir_is_a_file", "image_cls", output_at(lambda w: w.file("results.txt", "my results\n")),
         "is an existing file"),
    case("output_dir_under_a_file", "text_cls",
         lambda w: [*w.text(), "--output_dir", str(w.file("notes.txt", "keep me\n") / "runs" / "first")],
         "sits under", "notes.txt", "not a folder"),
    case("output_dir_unwritable", "image_cls", output_at(lambda w: w.locked(w.tmp / "readonly") / "run"),
         "cannot write to", "readonly"),
    case("output_dir_in_unwritable_folder", "image_cls",
         output_at(lambda w: w.user_folder(w.locked(w.tmp / "shared")) / "runs" / "new"), "cannot write to", "shared"),
    # ---- item 6: YAML values
    case("config_missing", "image_cls", lambda w: ["--config", str(w.tmp / "nope.yaml"), *w.image()],
         "config file", "does not exist"),
    case("config_key_typo", "image_cls", yaml_config("learning_rat: 0.1\n"), "did you mean 'learning_rate'"),
    case("config_scalar_for_list", "image_cls", yaml_config("wise_ft_alphas: 0.5\n"),
         "'wise_ft_alphas'", "takes a list", "[0.5]"),
    case("config_list_for_scalar", "image_cls", yaml_config("weight_decay: [0.1, 0.2]\n"), "'weight_decay'",
         "one value"),
    case("config_bad_choice", "image_cls", yaml_config("eval_strategy: epochs\n"), "'eval_strategy'",
         "did you mean 'epoch'"),
    case("config_not_a_number", "image_cls", yaml_config("weight_decay: heavy\n"), "--weight_decay", "'heavy'"),
    case("config_value_out_of_range", "image_cls", yaml_config("warmup_steps: -1\n"), "warmup_steps = -1"),
    # ---- item 6: data
    case("empty_text_cell", "text_cls", text_data(lambda w: w.csv("reviews.csv", [
        *((f"review {i}", i % 2) for i in range(30)), ("", 1), *((f"more {i}", i % 2) for i in range(9))])),
        "empty text", "'text'", "fill in or remove"),
    case("whitespace_text_cell", "text_cls", text_data(blank_text_in_test), "split 'test'", "empty text"),
    case("max_length_above_model_limit", "text_cls", text("--max_length", "512"),
         "--max_length 512", "128 tokens", "--max_length 128 or less"),
    case("text_column_not_text", "text_cls", text_data(lambda w: w.texts([0, 1] * 15), "--text_column", "label"),
         "'label'", "not text"),
    # ---- item 7: runs that used to "succeed"
    case("single_class", "text_cls", text_data(lambda w: w.texts(["pos"] * 30)), "single class ('pos')",
         "at least two"),
    case("single_class_into_empty_output_folder", "text_cls",
         into_empty_folder(text_data(lambda w: w.texts(["neg"] * 30))),
         "single class ('neg')"),
    case("single_class_with_a_test_split", "text_cls", text_data(lambda w: split_texts(w, [0] * 20, test=[0, 1] * 4)),
         "single class ('0')"),
    case("integer_labels_from_one", "text_cls", text_data(lambda w: w.texts([1 + i % 5 for i in range(40)])),
         "0..N-1", "found 1..5", "subtract 1"),
    case("integer_labels_with_gap", "text_cls", text_data(lambda w: w.texts([(0, 1, 3)[i % 3] for i in range(30)])),
         "class 2 has no training examples"),
    case("missing_label_cell", "text_cls", text_data(lambda w: w.texts([*[0, 1] * 10, "", 1])), "missing labels"),
    case("string_label_only_in_test", "text_cls",
         text_data(lambda w: split_texts(w, ["neg", "pos"] * 10, test=["neg", "pos", "meh"])),
         "'meh'", "does not occur in the train split"),
    case("integer_label_only_in_validation", "text_cls",
         text_data(lambda w: split_texts(w, [0, 1] * 10, validation=[0, 1, 2])), "label 2", "validation"),
    case("image_class_only_in_test", "image_cls",
         image_data(lambda w: w.image_folder({"train": {"cat": 4, "dog": 4}, "test": {"cat": 2, "dog": 2, "fox": 2}})),
         "class 'fox'", "split 'test'", "not in its train split"),
    case("samples_per_class_above_smallest_class", "text_cls",
         text_data(lambda w: w.texts(["a"] * 40 + ["b"] * 10), "--samples_per_class", "20"),
         "--samples_per_class 20", "class 'b'", "pass at most"),
    # ---- item 8: hints that help
    case("one_class_image_folder", "image_cls", image_data(lambda w: w.image_folder({"train": {"cat": 6}})),
         "one sub-folder per class"),
    case("csv_of_image_paths", "image_cls", image_data(image_paths_csv), "image file paths", "imagefolder"),
    case("image_column_of_paths", "image_cls", image_data(image_paths_csv, "--image_column", "path"),
         "a CSV of image paths is not read as images"),
    case("image_column_typo", "image_cls",
         image_data(lambda w: w.image_folder({"train": {"cat": 4, "dog": 4}}), "--image_column", "imgae"),
         "no image column 'imgae'", "did you mean --image_column image"),
    case("label_column_missing", "text_cls", text_data(lambda w: w.texts([0, 1] * 10), "--label_column", "stars"),
         "no label column 'stars'"),
    case("dataset_missing", "image_cls", image("--dataset", "./no/such/folder"), "does not exist"),
    # ---- --streaming: what a stream cannot give is refused before any model is loaded
    case("stream_without_max_steps", "text_cls", text_data(streamable_texts, "--streaming", "--class_names", "0,1"),
         "--streaming needs --max_steps"),
    case("stream_without_held_out_splits", "text_cls",
         text_data(lambda w: split_texts(w, [0, 1] * 10), *STREAM), "no validation or test split", "train/"),
    case("stream_without_class_names", "text_cls", text_data(streamable_texts, "--streaming", "--max_steps", "2"),
         "does not list its classes", "--class_names"),
    case("stream_label_outside_class_names", "text_cls",
         text_data(lambda w: split_texts(w, [0, 1] * 10, validation=[0, 1, 2], test=[0, 1]), *STREAM),
         "label 2", "not one of the classes"),
    case("stream_with_a_fitted_head", "text_cls", text_data(streamable_texts, *STREAM, "--strategy", "linear_probe"),
         "reads every training example", "--head_init random"),
    case("stream_of_a_builtin", "image_cls", image("--streaming", "--max_steps", "2"), "built-in 'digits'"),
    case("class_names_without_streaming", "text_cls", text("--class_names", "neg,pos"), "--class_names is for"),
    case("stream_for_domain_adaptation", "domain_adapt", domain("--streaming", "--max_steps", "2"),
         "not supported by domain adaptation"),
]


# ---------------------------------------------------------------- the table


@pytest.fixture(scope="module")
def recipes():
    return {name: load_recipe(name) for name in ("image_cls", "text_cls", "domain_adapt")}


@pytest.fixture
def quiet_progress_bars():
    """datasets' and transformers' progress bars write to stderr; off here so stderr holds what the tool printed."""
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as transformers_logging

    datasets_were_on = not are_progress_bars_disabled()
    transformers_were_on = transformers_logging.is_progress_bar_enabled()
    disable_progress_bars()
    transformers_logging.disable_progress_bar()
    yield
    if datasets_were_on:
        enable_progress_bars()
    if transformers_were_on:
        transformers_logging.enable_progress_bar()


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under root: file bytes, or None for a folder."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("bad", CASES, ids=[c.id for c in CASES])
def test_bad_input_prints_one_error_line_and_touches_nothing(
    bad, recipes, tiny_timm_dir, tiny_bert_dir, tmp_path, monkeypatch, capsys, quiet_progress_bars
):
    world = World(tmp_path, tiny_timm_dir, tiny_bert_dir, monkeypatch)
    world.user_folder(tmp_path / "mine")  # the user's files beside the output path
    argv = bad.argv(world)
    before = snapshot(tmp_path)
    capsys.readouterr()

    with pytest.raises(SystemExit) as exited:
        run_recipe(lambda: recipes[bad.recipe].main(argv))

    stderr = capsys.readouterr().err
    assert exited.value.code == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for phrase in bad.phrases:
        assert phrase in lines[0], lines[0]
    assert "; " in lines[0], f"no fix after the problem: {lines[0]}"
    assert snapshot(tmp_path) == before, "a failed run created, changed or removed files"


def test_the_table_covers_at_least_sixty_cases():
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)


# ---------------------------------------------------------------- real command lines


def _run(recipe: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / "recipes" / recipe), *args],
                          capture_output=True, text=True, timeout=180, cwd=cwd, env=env)


@pytest.mark.parametrize(
    "recipe, args, phrase",
    [
        ("image_cls.py", ["--learning_rate", "abc"], "error: --learning_rate: invalid float value: 'abc'"),
        ("text_cls.py", ["--strategy", "ful"], "error: unknown --strategy 'ful'; did you mean 'full'?"),
        ("domain_adapt.py", ["--method", "dnn"], "error: unknown --method 'dnn'; did you mean 'dann'?"),
        ("text_cls.py", ["--dataset", "labels.csv", "--model", "./no-model-needed"],
         "error: integer labels of 'labels.csv' must be 0..N-1; found 1..5"),
    ],
    ids=["argparse_type_error", "strategy_typo", "method_typo", "labels_from_one"],
)
def test_command_line_prints_exactly_one_line(recipe, args, phrase, tmp_path):
    (tmp_path / "labels.csv").write_text("text,label\n" + "".join(f"text {i},{1 + i % 5}\n" for i in range(40)))
    before = snapshot(tmp_path)
    result = _run(recipe, [*args, "--output_dir", str(tmp_path / "out")], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr  # one line, nothing else
    assert result.stderr.startswith(phrase), result.stderr
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------- inputs that must work


def test_sixteen_bit_png_is_scaled_to_eight_bits(tmp_path):
    from hftransfer.data import decode_image

    ramp = (np.arange(48 * 64, dtype=np.uint32).reshape(48, 64) * 21).astype(np.uint16)  # 0 .. 64491
    path = tmp_path / "ramp16.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I;16")

    decoded = np.asarray(decode_image({"path": str(path), "bytes": None}))
    reference = (ramp >> 8).astype(np.uint8)
    assert decoded.shape == (48, 64, 3)
    for channel in range(3):
        np.testing.assert_array_equal(decoded[..., channel], reference)
    assert (decoded == 255).mean() < 0.01  # Pillow's own conversion clipped 93.6% of such pixels to white


def test_sixteen_bit_big_endian_and_32_bit_images_scale_too():
    from hftransfer.data import decode_image

    ramp = (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 64).astype(np.uint16)
    big_endian = Image.frombytes("I;16B", (32, 32), ramp.astype(">u2").tobytes())
    np.testing.assert_array_equal(np.asarray(decode_image(big_endian))[..., 0], ramp >> 8)
    as_int32 = Image.fromarray(ramp.astype(np.int32))
    assert as_int32.mode == "I"
    np.testing.assert_array_equal(np.asarray(decode_image(as_int32))[..., 1], ramp >> 8)


@pytest.mark.parametrize("orientation, turns", [(3, 2), (6, -1), (8, 1)])  # 180°, 90° clockwise, 90° anticlockwise
def test_exif_orientation_is_applied_like_at_inference(orientation, turns):
    from transformers.image_utils import load_image

    from hftransfer.data import decode_image

    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:10] = (255, 0, 0)  # red top half
    pixels[:, :6] = (0, 0, 255)  # blue left edge
    original = Image.fromarray(pixels)
    exif = original.getexif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    original.save(buffer, format="JPEG", exif=exif.tobytes(), quality=95)
    stored = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))  # as written, orientation ignored

    decoded = np.asarray(decode_image({"bytes": buffer.getvalue(), "path": None}))
    np.testing.assert_array_equal(decoded, np.rot90(stored, turns))
    np.testing.assert_array_equal(decoded, np.asarray(load_image(Image.open(io.BytesIO(buffer.getvalue())))))


def test_rare_string_label_stays_in_every_split_whatever_the_seed(tmp_path):
    from hftransfer.data import load_classification_data

    labels = ["common"] * 90 + ["rare"] * 10
    csv = tmp_path / "data.csv"
    csv.write_text("text,label\n" + "".join(f"text {i},{label}\n" for i, label in enumerate(labels)))
    for seed in range(6):
        data = load_classification_data(str(csv), "text", seed=seed)
        rare = data.label_names.index("rare")
        counts = {name: list(split["label"]).count(rare) for name, split in data.splits.items()}
        # stratified: test holds 20% of each class (2 of 10 rare), validation 10% of the rest
        assert counts == {"train": 7, "validation": 1, "test": 2}, (seed, counts)
