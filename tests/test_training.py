"""FlowTrainer: resume equals an uninterrupted run, NaN steps, best weights, conditioning."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import shutil

import numpy as np
import pytest
import torch

import flowaug
from flowaug import FlowTrainer, Glow, TrainConfig
from flowaug.data import load_sklearn
from flowaug.flows.layers import ActNorm
from flowaug.seeding import generator
from flowaug.training import NonFiniteLossError, latest_checkpoint

TINY = dict(image_shape=(1, 8, 8), num_classes=10, depth=1, hidden=8, levels=17)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # the test machine is shared: spinning OpenMP threads of busy processes slow everyone down
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits():
    return load_sklearn("digits")


def _config(**overrides) -> TrainConfig:
    settings = dict(batch_size=16, max_steps=12, eval_every=3, warmup_steps=2, progress=False)
    settings.update(overrides)
    return TrainConfig(**settings)


class Crash(Exception):
    pass


class InstrumentedGlow(Glow):
    """A Glow that crashes or goes non-finite on chosen training forward passes."""

    def __init__(self, *args, crash_after=None, nan_loss_at=(), nan_grad_at=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.crash_after = crash_after
        self.nan_loss_at, self.nan_grad_at = set(nan_loss_at), set(nan_grad_at)
        self.calls = 0

    def _forward(self, x, y):
        eps, logdet = super()._forward(x, y)
        if self.training and torch.is_grad_enabled():
            step = self.calls
            self.calls += 1
            if self.crash_after is not None and step >= self.crash_after:
                raise Crash(f"simulated crash at step {step}")
            if step in self.nan_loss_at or "all" in self.nan_loss_at:
                logdet = logdet * float("nan")
            if step in self.nan_grad_at:
                logdet.register_hook(lambda g: g * float("nan"))
        return eps, logdet


def _model(seed=0, **kwargs) -> InstrumentedGlow:
    torch.manual_seed(seed)
    return InstrumentedGlow(**{**TINY, **kwargs})


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("batch_size", 0),
        ("lr", -1.0),
        ("lr", float("nan")),
        ("max_steps", 2.5),
        ("ema_decay", 1.0),
        ("mixed_precision", "fp8"),
        ("schedule", "linear"),
        ("patience", 0),
        ("grad_clip", 0.0),
        ("seed", -1),
        ("max_time", 0.0),
        ("checkpoint_every", 10),  # without output_dir
    ],
)
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_fp16_on_cpu_is_refused_clearly():
    if torch.cuda.is_available():
        pytest.skip("fp16 is valid on a CUDA machine")
    with pytest.raises(ValueError, match="fp16.*CUDA"):
        FlowTrainer(_model(), TrainConfig(mixed_precision="fp16"))


def test_data_model_mismatches_are_refused(digits):
    trainer = FlowTrainer(Glow((1, 8, 8), num_classes=10, depth=1, hidden=4), _config())
    with pytest.raises(ValueError, match="levels=17"):
        trainer.fit(digits.subset(range(32)))
    trainer = FlowTrainer(_model(), _config(batch_size=64))
    with pytest.raises(ValueError, match="batch_size"):
        trainer.fit(digits.subset(range(32)))


# --- reproducibility ---------------------------------------------------------------------------


def test_actnorm_init_is_a_function_of_the_seed_only(digits):
    """Every process computes the same data-dependent init, whatever its RNG state."""
    a = _model()
    b = copy.deepcopy(a)
    torch.manual_seed(1)
    FlowTrainer(a, _config(seed=5))._initialize(digits)
    torch.manual_seed(2)
    FlowTrainer(b, _config(seed=5))._initialize(digits)
    norms_a = [m for m in a.modules() if isinstance(m, ActNorm)]
    norms_b = [m for m in b.modules() if isinstance(m, ActNorm)]
    for m, n in zip(norms_a, norms_b, strict=True):
        assert bool(m.initialized) and torch.equal(m.loc, n.loc)
        assert torch.equal(m.log_scale, n.log_scale)


def test_same_seed_same_weights_other_seed_other_weights(digits):
    data = digits.subset(range(64))
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        model = _model()
        FlowTrainer(model, _config(max_steps=4, seed=seed)).fit(data)
        runs[name] = model
    assert _same_weights(runs["a"], runs["b"])
    assert not _same_weights(runs["a"], runs["c"])


RESUME_CASES = {
    "plain": ({}, {}),
    "ema+dropout+val": ({"ema_decay": 0.8}, {"dropout": 0.3}),
    # unlabelled rows join at step 3, posteriors refreshed every 3 steps (checkpoints at 4, 8)
    "semi-supervised": ({"unlabelled_start": 3, "refresh_every": 3}, {}),
    "pseudo-labels": ({"semi_supervised": "pseudo", "pseudo_threshold": 0.2}, {}),
}


@pytest.mark.parametrize("case", sorted(RESUME_CASES))
def test_resume_is_bitwise_identical_to_uninterrupted(tmp_path, digits, case):
    cfg_extra, model_extra = RESUME_CASES[case]
    train, val = digits.subset(range(96)), digits.subset(range(96, 128))
    if "semi_supervised" in cfg_extra or "unlabelled_start" in cfg_extra:
        y = train.y.clone()
        y[32:] = -1  # rows 32.. unlabelled: the posterior table is part of the checkpoint
        train = dataclasses.replace(train, y=y)

    def config(out):
        return _config(output_dir=str(out), checkpoint_every=4, keep_checkpoints=5, **cfg_extra)

    straight = _model(**model_extra)
    h_straight = FlowTrainer(straight, config(tmp_path / "a")).fit(train, val)

    crashing = _model(crash_after=10, **model_extra)
    with pytest.raises(Crash):
        FlowTrainer(crashing, config(tmp_path / "b")).fit(train, val)
    assert latest_checkpoint(tmp_path / "b" / "checkpoints").name == "step_00000008"

    resumed = _model(seed=123, **model_extra)  # other random init: the checkpoint decides
    h_resumed = FlowTrainer(resumed, config(tmp_path / "b")).fit(train, val, resume_from="latest")

    assert _same_weights(straight, resumed)
    strip = [{k: v for k, v in r.items() if k != "time"} for r in h_straight.records]
    assert strip == [{k: v for k, v in r.items() if k != "time"} for r in h_resumed.records]
    assert h_resumed.best_step == h_straight.best_step
    saved = json.loads((tmp_path / "b" / "history.json").read_text())
    assert saved["steps"] == 12 and len(saved["records"]) == 4


def test_checkpoint_selection_ignores_partial_writes_and_detects_damage(tmp_path, digits):
    data = digits.subset(range(64))
    out = tmp_path / "run"
    FlowTrainer(_model(), _config(output_dir=str(out), checkpoint_every=4)).fit(data)
    root = out / "checkpoints"
    assert [p.name for p in sorted(root.iterdir())] == ["step_00000008", "step_00000012"]
    # a crash mid-write leaves a temp folder or a folder without trainer_state.json
    shutil.copytree(root / "step_00000012", root / ".tmp-step_00000016-1")
    (root / "step_00000020").mkdir()
    assert latest_checkpoint(root).name == "step_00000012"
    weights = root / "step_00000012" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(ValueError, match="model.safetensors"):
        FlowTrainer(_model(), _config(output_dir=str(out))).fit(data, resume_from="latest")
    with pytest.raises(ValueError, match="batch_size"):
        FlowTrainer(_model(), _config(output_dir=str(out), batch_size=8)).fit(
            data, resume_from=root / "step_00000008"
        )


@pytest.mark.parametrize(
    "config_change,model_change,match",
    [
        ({"lr": 5e-3}, {}, r"lr=0\.001 -> 0\.005"),
        ({"max_steps": 20}, {}, r"max_steps=12 -> 20"),
        ({"ema_decay": 0.5}, {}, r"ema_decay=None -> 0\.5"),
        ({}, {"dropout": 0.5}, r"model built differently \(dropout=0\.0 -> 0\.5\)"),
    ],
    ids=["lr", "max-steps", "ema", "model"],
)
def test_resume_refuses_other_settings(tmp_path, digits, config_change, model_change, match):
    data = digits.subset(range(64))
    cfg = dict(output_dir=str(tmp_path), checkpoint_every=4)
    FlowTrainer(_model(), _config(**cfg)).fit(data)
    with pytest.raises(ValueError, match=match):
        FlowTrainer(_model(**model_change), _config(**cfg, **config_change)).fit(
            data, resume_from="latest"
        )
    # what does not shape the weights may change
    FlowTrainer(_model(), _config(**cfg, keep_checkpoints=3, max_time=60.0)).fit(
        data, resume_from="latest"
    )


def test_output_dir_holds_the_trained_model(tmp_path, digits):
    data = digits.subset(range(64))
    model = _model()
    FlowTrainer(model, _config(output_dir=str(tmp_path), checkpoint_every=6)).fit(data)
    loaded = flowaug.load(tmp_path)
    x = model.prepare_batch(data.x[:4], torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded.log_prob(x, data.y[:4]), model.log_prob(x, data.y[:4]))
    with pytest.raises(FileNotFoundError, match="is a training checkpoint, not a saved model"):
        flowaug.load(tmp_path / "checkpoints" / "step_00000012")


def test_a_fresh_run_never_mixes_with_earlier_checkpoints(tmp_path, digits):
    data = digits.subset(range(64))
    FlowTrainer(_model(), _config(output_dir=str(tmp_path), checkpoint_every=4)).fit(data)
    before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    with pytest.raises(ValueError, match="checkpoints of an earlier run .*resume_from='latest'"):
        FlowTrainer(_model(), _config(output_dir=str(tmp_path), checkpoint_every=3)).fit(data)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before


def test_stale_temporary_checkpoints_are_cleared(tmp_path, digits):
    root = tmp_path / "checkpoints"
    (root / ".tmp-step_00000004-99999").mkdir(parents=True)  # a run killed mid-save
    FlowTrainer(_model(), _config(output_dir=str(tmp_path), checkpoint_every=4)).fit(
        digits.subset(range(64))
    )
    assert sorted(p.name for p in root.iterdir()) == ["step_00000008", "step_00000012"]


def test_numpy_scalars_in_the_config_train_and_checkpoint(tmp_path, digits):
    cfg = _config(
        batch_size=np.int64(16), seed=np.int64(3), lr=np.float32(1e-3), output_dir=tmp_path,
        checkpoint_every=np.int64(6),
    )  # fmt: skip
    assert type(cfg.batch_size) is int and type(cfg.lr) is float and cfg.output_dir == str(tmp_path)
    FlowTrainer(_model(), cfg).fit(digits.subset(range(64)))
    assert latest_checkpoint(tmp_path / "checkpoints").name == "step_00000012"


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("progress", "no", "progress must be True or False"),
        ("cpu", None, "cpu must be True or False"),
        ("output_dir", "", "output_dir must be a folder path"),
        ("output_dir", 123, "output_dir must be a folder path"),
    ],
)
def test_flag_and_folder_fields_are_checked(field, value, match):
    with pytest.raises(TypeError, match=match):
        TrainConfig(**{field: value})


# --- non-finite steps --------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["nan_loss_at", "nan_grad_at"])
def test_non_finite_steps_are_skipped_and_counted(digits, where):
    model = _model(**{where: {2, 3, 7}})
    history = FlowTrainer(model, _config(max_bad_steps=3)).fit(digits.subset(range(64)))
    assert history.bad_steps == 3 and history.steps == 12
    assert [r["bad_steps"] for r in history.records] == [1, 2, 3, 3]  # evals at 3, 6, 9, 12
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_skipped_step_leaves_the_weights_alone(digits):
    data = digits.subset(range(64))
    clean, skipped = _model(), _model(nan_grad_at={1})
    FlowTrainer(clean, _config(max_steps=1)).fit(data)
    FlowTrainer(skipped, _config(max_steps=2)).fit(data)
    assert _same_weights(clean, skipped)


def test_consecutive_bad_steps_raise_naming_the_step(digits):
    model = _model(nan_loss_at={"all"})
    with pytest.raises(NonFiniteLossError, match="step 2: 3 consecutive"):
        FlowTrainer(model, _config(max_bad_steps=3)).fit(digits.subset(range(64)))


# --- validation, best weights, early stopping ---------------------------------------------------


def _val_bpd(model, val, seed):
    x = model.prepare_batch(val.x, generator=generator(seed, "val-noise"))
    with torch.no_grad():
        return model.bits_per_dim_from_log_prob(model.log_prob(x, val.y), 17).mean().item()


def test_early_stopping_restores_the_best_validation_weights(digits):
    """A tiny training set overfits: validation gets worse, training stops, best weights return."""
    train, val = digits.subset(range(24)), digits.subset(range(300, 400))
    cfg = _config(batch_size=8, max_steps=200, eval_every=4, lr=1e-2, patience=3)
    model = _model(hidden=16)
    history = FlowTrainer(model, cfg).fit(train, val)
    vals = history.column("val_bpd")
    assert history.stopped_early and history.steps < 200, vals
    assert history.records[-1]["step"] - history.best_step == 3 * cfg.eval_every
    assert history.best_val_bpd == min(vals) and vals[-1] > history.best_val_bpd
    assert not model.training
    assert _val_bpd(model, val, cfg.seed) == pytest.approx(history.best_val_bpd, abs=1e-5)


def test_class_conditioning_is_learned(digits):
    """On two distinguishable classes the right label explains the image better."""
    mask = digits.y < 2
    pairs = digits.subset(torch.nonzero(mask).flatten())
    train, test = pairs.subset(range(0, 300)), pairs.subset(range(300, len(pairs)))
    model = Glow((1, 8, 8), num_classes=2, depth=1, hidden=16, levels=17)
    FlowTrainer(model, _config(batch_size=32, max_steps=30, lr=3e-3, eval_every=30)).fit(train)
    x = model.prepare_batch(test.x, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        right = model.log_prob(x, test.y)
        wrong = model.log_prob(x, 1 - test.y)
    assert (right > wrong).float().mean() > 0.9


def test_bf16_autocast_trains_on_cpu(digits):
    model = _model()
    history = FlowTrainer(model, _config(max_steps=3, mixed_precision="bf16")).fit(
        digits.subset(range(32))
    )
    assert history.bad_steps == 0 and math.isfinite(history.records[-1]["train_bpd"])


# --- flowaug.fit -------------------------------------------------------------------------------


def test_fit_returns_a_trained_named_model(digits):
    data = digits.subset(range(120))
    model = flowaug.fit(data, config=_config(max_steps=3), depth=1, hidden=8)
    assert isinstance(model, Glow) and not model.training
    assert model.class_names == digits.class_names and model.config["levels"] == 17


def test_fit_on_a_data_frame_uses_the_tabular_flow():
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame
    model = flowaug.fit(frame, label="target", config=_config(max_steps=3), depth=1, hidden=8)
    assert type(model).__name__ == "TabularFlow"
    assert len(model.class_names) == 3


def test_max_time_stops_with_a_final_evaluation(digits):
    train, val = digits.subset(range(64)), digits.subset(range(64, 96))
    history = FlowTrainer(_model(), _config(max_steps=1000, max_time=1e-9, eval_every=50)).fit(
        train, val
    )
    assert [r["step"] for r in history.records] == [1]
    assert history.records[0]["val_bpd"] is not None


@pytest.mark.parametrize("num_train", [50, 216, 1617, 4999, 5000, 50_000])
@pytest.mark.parametrize("shape", [None, (1, 8, 8), (3, 16, 16), (1, 28, 28), (3, 32, 32)])
def test_defaults_per_image_size(num_train, shape):
    # a small set of images over 16 pixels a side: batches of at most 16 at 5e-3 and the 8x8
    # model (fit_time.md: 2x faster to a better validation bits/dim at 32x32); else as before
    from flowaug.data import as_flow_data
    from flowaug.training import build_model, default_config
    from flowaug.training.config import is_large_image

    assert is_large_image(shape) == (shape is not None and shape[1] > 16)
    large = shape is not None and shape[1] > 16 and num_train < 5000
    cfg = default_config(num_train, event_shape=shape)
    assert cfg.batch_size == min(num_train, 16 if large else 64, max(8, num_train // 8))
    assert cfg.lr == (5e-3 if large else 2e-3 if num_train < 5000 else 1e-3)
    per_epoch = max(1, num_train // cfg.batch_size)
    assert cfg.max_steps == min(20_000, max(500, (24 if large else 40) * per_epoch))
    assert default_config(num_train, event_shape=shape, lr=1e-4, batch_size=8).lr == 1e-4
    if shape is not None:
        data = as_flow_data((torch.zeros(2, *shape, dtype=torch.long), torch.tensor([0, 1])),
                            levels=256)
        model = build_model(data, num_samples=num_train)
        wide = shape[1] > 16 and num_train >= 5000
        assert (model.config["depth"], model.config["hidden"]) == ((12, 128) if wide else (8, 64))


@pytest.mark.parametrize("num_train", [50, 216, 1000, 5000, 50_000])
def test_default_early_stopping_can_end_a_run_that_overfits(num_train):
    # measured on 240 digits (216 train): validation best at step 275 of 500; patience 10
    # validations (250 steps) could never stop it, 5 (125 steps) stops it at step 400
    from flowaug.training import default_config

    cfg = default_config(num_train)
    assert cfg.patience is not None
    assert cfg.patience * cfg.eval_every <= cfg.max_steps // 3
    assert cfg.patience >= 3  # still rides out a noisy validation or two


@pytest.mark.parametrize(
    "version,device,fused",
    [("2.3.1", "cpu", False), ("2.4.0", "cpu", True), ("2.14.1+cu130", "cpu", True),
     ("2.3.1", "cuda", True), ("2.14.1", "mps", False)],
)  # fmt: skip
def test_fused_adamw_only_where_this_torch_has_it(monkeypatch, version, device, fused):
    # torch 2.3 (the oldest we declare) raises for AdamW(fused=True) on CPU tensors
    from flowaug.training import trainer

    monkeypatch.setattr(trainer.torch, "__version__", version)
    assert trainer._has_fused_adamw(torch.device(device)) is fused
