"""Persistence: safetensors + JSON round trips, and clear failures on damaged saves."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil

import pytest
import torch
from conftest import perturb_zero_init

import flowaug
from flowaug import Glow
from flowaug.io import CONFIG_NAME, WEIGHTS_NAME, load, save_model

GLOWS = {
    "conditional-8x8": dict(image_shape=(1, 8, 8), num_classes=3, depth=1, hidden=8, levels=17),
    "unconditional-8x8": dict(image_shape=(1, 8, 8), num_classes=0, depth=2, hidden=8),
    "rgb-4x4-one-level": dict(
        image_shape=(3, 4, 4), num_classes=2, num_scales=1, depth=1, hidden=4
    ),
}


def _glow(name: str) -> Glow:
    model = Glow(**GLOWS[name])
    model.initialize(torch.rand(16, *model.event_shape), _labels(model, 16))
    return perturb_zero_init(model).eval()


def _labels(model: Glow, n: int) -> torch.Tensor | None:
    return torch.arange(n) % model.num_classes if model.num_classes else None


@pytest.fixture
def saved(tmp_path):
    model = _glow("conditional-8x8")
    model.save_pretrained(tmp_path / "m", class_names=["a", "b", "c"])
    return model, tmp_path / "m"


@pytest.mark.parametrize("name", sorted(GLOWS))
def test_round_trip_gives_identical_log_prob(tmp_path, name):
    model = _glow(name)
    names = [f"class {i}" for i in range(model.num_classes)] or None
    model.save_pretrained(tmp_path, class_names=names)
    loaded = flowaug.load(tmp_path)
    x = torch.rand(5, *model.event_shape)
    y = _labels(model, 5)
    assert type(loaded) is Glow and not loaded.training
    assert loaded.config == model.config
    assert loaded.class_names == names
    assert torch.equal(loaded.log_prob(x, y), model.log_prob(x, y))
    assert torch.equal(loaded.encode(x, y), model.encode(x, y))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_from_pretrained_checks_the_class(saved):
    _, path = saved
    assert isinstance(Glow.from_pretrained(path), Glow)

    class Other(Glow):
        pass

    with pytest.raises(TypeError, match="holds a Glow"):
        Other.from_pretrained(path)


def test_files_and_config_layout(saved):
    model, path = saved
    record = json.loads((path / CONFIG_NAME).read_text())
    assert record["format_version"] == 1
    assert record["model_type"] == "Glow"
    assert record["config"] == model.config
    assert record["class_names"] == ["a", "b", "c"]
    assert sorted(os.listdir(path)) == [CONFIG_NAME, WEIGHTS_NAME]  # no temp files left


def test_loading_never_unpickles(saved, monkeypatch):
    _, path = saved

    def refuse(*args, **kwargs):
        raise AssertionError("loading must not unpickle")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    assert isinstance(load(path), Glow)


def _truncate(path, name):
    data = (path / name).read_bytes()
    (path / name).write_bytes(data[: len(data) // 2])


def _other_weights(path, name):
    other = path.parent / "other"
    Glow((1, 8, 8), num_classes=3, depth=2, hidden=8, levels=17).save_pretrained(other)
    shutil.copy(other / WEIGHTS_NAME, path / WEIGHTS_NAME)


def _edit_config(path, **changes):
    record = json.loads((path / CONFIG_NAME).read_text())
    for key, value in changes.items():
        if key in record:
            record[key] = value
        else:
            record["config"][key] = value
    (path / CONFIG_NAME).write_text(json.dumps(record))


DAMAGE = {
    "missing directory": (lambda p: shutil.rmtree(p), FileNotFoundError, "not a directory"),
    "missing config": (lambda p: os.remove(p / CONFIG_NAME), FileNotFoundError, CONFIG_NAME),
    "missing weights": (lambda p: os.remove(p / WEIGHTS_NAME), FileNotFoundError, WEIGHTS_NAME),
    "truncated weights": (lambda p: _truncate(p, WEIGHTS_NAME), ValueError, WEIGHTS_NAME),
    "truncated config": (lambda p: _truncate(p, CONFIG_NAME), ValueError, CONFIG_NAME),
    "weights of another model": (lambda p: _other_weights(p, WEIGHTS_NAME), ValueError, "hash"),
    "config of another model": (lambda p: _edit_config(p, depth=3), ValueError, "does not fit"),
    "config rejected by the model": (lambda p: _edit_config(p, depth=0), ValueError, "rejects"),
    "unknown model type": (lambda p: _edit_config(p, model_type="Nope"), ValueError, "Nope"),
    "future format": (lambda p: _edit_config(p, format_version=99), ValueError, "version"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_saves_raise_clear_errors(saved, damage):
    _, path = saved
    apply, error, fragment = DAMAGE[damage]
    apply(path)
    with pytest.raises(error, match=fragment):
        load(path)


def test_weights_sha256_is_mandatory(saved):
    # without the hash, bit-flipped weights would load: format version 1 always records it
    _, path = saved
    record = json.loads((path / CONFIG_NAME).read_text())
    del record["weights_sha256"]
    (path / CONFIG_NAME).write_text(json.dumps(record))
    with pytest.raises(ValueError, match="lacks weights_sha256.*sha256sum"):
        load(path)
    record["weights_sha256"] = "not a hash"
    (path / CONFIG_NAME).write_text(json.dumps(record))
    with pytest.raises(ValueError, match="has weights_sha256='not a hash'"):
        load(path)


def test_weights_with_their_own_hash_still_checked_against_the_model(saved):
    _, path = saved
    _other_weights(path, WEIGHTS_NAME)
    record = json.loads((path / CONFIG_NAME).read_text())
    record["weights_sha256"] = hashlib.sha256((path / WEIGHTS_NAME).read_bytes()).hexdigest()
    (path / CONFIG_NAME).write_text(json.dumps(record))
    with pytest.raises(ValueError, match="does not fit"):
        load(path)


BAD_FIELDS = {
    "clamp": (-1, "a finite number in (0, 100]"),
    "levels": (10**18, "an integer in [2, 65536]"),
    "hidden": (10**9, "an integer in [1, 65536]"),
    "depth": (10**7, "an integer in [1, 1024]"),
    "dropout": (1.5, "[0, 1)"),
    "logit_alpha": (0.7, "(0, 0.5)"),
    "num_scales": (99, "an integer in [1, 12] or null"),
    "image_shape": ([1, 8], "[C, H, W]"),
    "coupling": ("magic", "one of ['affine', 'spline']"),
    "cond_dim": (True, "an integer in [1, 65536]"),
    "num_classes": (-3, "an integer in [0, 1000000]"),
}


@pytest.mark.parametrize("field", sorted(BAD_FIELDS))
def test_every_config_field_is_checked_on_load(saved, field):
    _, path = saved
    value, allowed = BAD_FIELDS[field]
    _edit_config(path, **{field: value})
    with pytest.raises(ValueError) as info:
        load(path)
    message = str(info.value)
    assert f"Glow rejects {field}={value!r}; expected" in message and allowed in message


def test_weights_that_cannot_fit_in_memory_are_refused_with_an_estimate(saved):
    # each field within its bounds, the model as a whole far too big: refused before allocating
    _, path = saved
    _edit_config(path, hidden=65_536, depth=1024)
    with pytest.raises(ValueError, match=r"needs about [\d.]+ (TiB|PiB), more than this machine"):
        load(path)


def test_the_memory_estimate_is_exact_for_real_models():
    from flowaug.io.config_checks import estimate_state_bytes
    from flowaug.tabular import TabularFlow

    for cls, config in [
        (Glow, dict(image_shape=[1, 8, 8], num_classes=3, depth=5, hidden=8)),
        (Glow, dict(image_shape=[3, 4, 4], num_classes=0, depth=1, coupling="spline")),
        (TabularFlow, dict(num_features=5, num_classes=2, depth=4, hidden=8)),
    ]:
        model = cls(**config)
        real = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
        assert estimate_state_bytes(lambda c, cls=cls: cls(**c), config) == real


def test_deeply_nested_or_incomplete_configs_give_clear_errors(saved, tmp_path):
    _, path = saved
    (path / CONFIG_NAME).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="nests its JSON too deeply"):
        load(path)
    table = _table_model()
    table.save_pretrained(tmp_path / "t")
    record = json.loads((tmp_path / "t" / CONFIG_NAME).read_text())
    del record["config"]["columns"]["mean"]  # a KeyError deep inside the column encoders
    (tmp_path / "t" / CONFIG_NAME).write_text(json.dumps(record))
    with pytest.raises(ValueError, match="rejects \\(KeyError: 'mean'\\)"):
        load(tmp_path / "t")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_at_load_naming_the_tensor(tmp_path, bad):
    model = _glow("conditional-8x8")
    with torch.no_grad():
        model.prior.base[3] = bad
    model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="tensor 'prior.base' holds 1 NaN or infinite value"):
        flowaug.load(tmp_path)
    with pytest.raises(ValueError, match="prior.base"):
        Glow.from_pretrained(tmp_path)


def test_io_doctest():
    import doctest

    import flowaug.io

    result = doctest.testmod(flowaug.io)
    assert result.attempted > 0 and result.failed == 0


def test_config_checks_doctest():
    import doctest

    from flowaug.io import config_checks

    assert doctest.testmod(config_checks).failed == 0


def test_crash_between_the_two_writes_is_detected(saved, monkeypatch):
    """A save that dies after replacing the weights but before the config never loads."""
    _, path = saved
    newer = _glow("conditional-8x8")
    with torch.no_grad():
        for p in newer.parameters():
            p.add_(0.1)
    real_replace = os.replace

    def crash_on_config(src, dst):
        if str(dst).endswith(CONFIG_NAME):
            raise OSError("simulated crash")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_config)
    with pytest.raises(OSError, match="simulated"):
        newer.save_pretrained(path)
    monkeypatch.setattr(os, "replace", real_replace)
    assert sorted(os.listdir(path)) == [CONFIG_NAME, WEIGHTS_NAME]  # temp file cleaned up
    with pytest.raises(ValueError, match="hash"):
        load(path)


@pytest.mark.parametrize("names", [["a", "b"], "abc"])
def test_bad_class_names_are_refused_on_save(tmp_path, names):
    with pytest.raises((ValueError, TypeError), match="class_names"):
        save_model(_glow("conditional-8x8"), tmp_path, class_names=names)


def test_save_refuses_non_models(tmp_path):
    with pytest.raises(TypeError, match="flowaug model"):
        save_model(torch.nn.Linear(2, 2), tmp_path)


def test_map_location_and_class_names_default_from_model(tmp_path):
    model = _glow("conditional-8x8")
    model.class_names = ["x", "y", "z"]
    save_model(model, tmp_path)
    loaded = load(tmp_path, map_location=torch.device("cpu"))
    assert loaded.class_names == ["x", "y", "z"]
    assert loaded.device.type == "cpu"


def _table_model():
    import pandas as pd

    from flowaug import tabular

    df = pd.DataFrame(
        {
            "a": [0.1, 0.5, 0.3, 0.9, 0.7, 0.2],
            "k": [1, 2, 3, 1, 2, 3],
            "c": ["u", "v", "u", "v", "u", "v"],
            "label": ["no", "no", "no", "yes", "yes", "yes"],
        }
    )
    model = tabular.TabularFlow.from_frame(df, label="label", depth=1, hidden=8)
    model.initialize(*model.encode_frame(df, seed=0))
    model.frame = df
    return perturb_zero_init(model).eval()


def test_tabular_flow_round_trip(tmp_path):
    model = _table_model()
    x, y = model.encode_frame(model.frame, seed=0)
    model.save_pretrained(tmp_path)
    loaded = load(tmp_path)
    assert type(loaded).__name__ == "TabularFlow"
    assert loaded.class_names == model.class_names
    assert torch.equal(loaded.log_prob(x, y), model.log_prob(x, y))


@pytest.mark.parametrize(
    "tensors,metadata",
    [({}, None), ({}, {}), ({}, {"kind": "extras"}), ({"w": torch.arange(3.0)}, {})],
    ids=["empty", "empty-metadata", "metadata-only", "tensors"],
)
def test_tensor_files_round_trip_even_when_empty(tmp_path, tensors, metadata):
    # a checkpoint of a run without validation or EMA has no extra tensors
    from flowaug.io import load_tensors, save_tensors

    digest = save_tensors(tensors, tmp_path / "t.safetensors", metadata)
    back = load_tensors(tmp_path / "t.safetensors", digest)
    assert back.keys() == tensors.keys()
    assert all(torch.equal(back[k], v) for k, v in tensors.items())
