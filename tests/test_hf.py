"""Hugging Face datasets hook: augment_dataset, with_transform, streaming (all offline)."""

from __future__ import annotations

import pickle

import datasets
import numpy as np
import PIL.Image
import pytest
import torch
from conftest import perturb_zero_init
from datasets import ClassLabel, Dataset, Features, Value
from torch.utils.data import DataLoader

from flowaug import Glow, hf
from flowaug.pixels import image_to_model

pytestmark = pytest.mark.usefixtures("quiet_datasets")


def digit_images(n: int, seed: int = 0) -> tuple[list[PIL.Image.Image], list[int]]:
    """Grayscale 8x8 PIL images on the 17-level grid and labels 0..9."""
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 17, (n, 8, 8), generator=g)
    images = [PIL.Image.fromarray((c * 255 / 16).round().byte().numpy(), mode="L") for c in codes]
    return images, [i % 10 for i in range(n)]


FEATURES = Features(
    {
        "image": datasets.Image(),
        "label": ClassLabel(names=[f"digit{i}" for i in range(10)]),
        "source": Value("string"),
    }
)


@pytest.fixture
def image_ds():
    images, labels = digit_images(20)
    return Dataset.from_dict(
        {"image": images, "label": labels, "source": ["real"] * 20}, features=FEATURES
    )


def pixels(image) -> np.ndarray:
    return np.array(image, dtype=np.uint8)


# --- augment_dataset --------------------------------------------------------------------------
def test_augment_dataset_keeps_features_and_real_rows(image_ds, model, tmp_path):
    out = hf.augment_dataset(
        image_ds, model, n_per_class=3, seed=0, progress=False, cache_dir=str(tmp_path)
    )
    assert out.features == Features({**FEATURES, "is_synthetic": Value("bool")})
    assert len(out) == 20 + 30
    flags = out["is_synthetic"]
    assert list(flags) == [False] * 20 + [True] * 30
    for i in (0, 7, 19):
        assert np.array_equal(pixels(out[i]["image"]), pixels(image_ds[i]["image"]))
        assert out[i]["label"] == image_ds[i]["label"] and out[i]["source"] == "real"
    synthetic = out.select(range(20, 50))
    assert sorted(synthetic["label"]) == sorted(list(range(10)) * 3)
    row = synthetic[0]
    assert isinstance(row["image"], PIL.Image.Image)
    assert row["image"].mode == "L" and row["image"].size == (8, 8)
    assert row["source"] is None


def test_augment_dataset_is_deterministic_and_saves(image_ds, model, tmp_path):
    def run(seed, cache):
        return hf.augment_dataset(
            image_ds, model, n_per_class=2, seed=seed, progress=False, cache_dir=str(cache)
        )

    a, b, c = run(0, tmp_path / "a"), run(0, tmp_path / "b"), run(1, tmp_path / "c")
    images = [pixels(r["image"]) for r in a.select(range(20, 40))]
    assert all(
        np.array_equal(x, pixels(r["image"]))
        for x, r in zip(images, b.select(range(20, 40)), strict=True)
    )
    assert not all(
        np.array_equal(x, pixels(r["image"]))
        for x, r in zip(images, c.select(range(20, 40)), strict=True)
    )
    assert a["label"][:] == b["label"][:]
    again = run(0, tmp_path / "a")  # the same call again: the same fingerprint, from the cache
    assert again._fingerprint == a._fingerprint != c._fingerprint
    a.save_to_disk(str(tmp_path / "saved"))
    back = datasets.load_from_disk(str(tmp_path / "saved"))
    assert back.features == a.features and len(back) == len(a)
    assert np.array_equal(pixels(back[-1]["image"]), pixels(a[-1]["image"]))


def test_augmenting_twice_keeps_the_flag(image_ds, model, tmp_path):
    marked = image_ds.with_transform(lambda batch: batch)  # a transform set on ds is dropped
    once = hf.augment_dataset(
        marked, model, n_per_class=1, seed=0, progress=False, cache_dir=str(tmp_path)
    )
    twice = hf.augment_dataset(
        once, model, n_per_class=1, seed=1, progress=False, cache_dir=str(tmp_path)
    )
    assert twice.features == once.features
    assert sum(twice["is_synthetic"]) == 20 and len(twice) == 40


def test_ratio_keeps_the_class_balance(model, tmp_path):
    images, _ = digit_images(12)
    labels = [0] * 8 + [3] * 4
    ds = Dataset.from_dict({"image": images, "label": labels}, features=None)
    ds = ds.cast_column("image", datasets.Image())
    out = hf.augment_dataset(ds, model, ratio=0.5, seed=0, progress=False, cache_dir=str(tmp_path))
    synthetic = out.filter(lambda r: r["is_synthetic"])
    assert sorted(synthetic["label"]) == [0] * 4 + [3] * 2
    assert out.features["label"] == Value("int64")


@pytest.mark.parametrize(
    "feature,shape,dtype",
    [
        (datasets.Array3D((1, 8, 8), "uint8"), (1, 8, 8), np.uint8),
        (datasets.List(datasets.List(datasets.List(Value("float32")))), (8, 8, 1), np.float32),
        (datasets.Array2D((8, 8), "float32"), (8, 8), np.float32),
    ],
    ids=["array3d-uint8-chw", "list-float-hwc", "array2d-float-hw"],
)
def test_array_columns_keep_dtype_and_layout(model, tmp_path, feature, shape, dtype):
    rng = np.random.default_rng(0)
    values = rng.integers(0, 17, (6, *shape))
    values = (values * 255 / 16).round().astype(np.uint8) if dtype == np.uint8 else values / 16
    ds = Dataset.from_dict(
        {"pixels": values.astype(dtype), "label": [0, 1, 2, 0, 1, 2]},
        features=Features({"pixels": feature, "label": Value("int64")}),
    )
    out = hf.augment_dataset(
        ds,
        model,
        image_column="pixels",
        n_per_class={1: 2},
        progress=False,
        cache_dir=str(tmp_path),
    )
    assert out.features["pixels"] == feature
    row, real = out.with_format("numpy")[-1], out.with_format("numpy")[0]
    # (datasets' numpy formatting widens uint8 arrays to int64: compare with a real row)
    assert row["pixels"].shape == shape and row["pixels"].dtype == real["pixels"].dtype
    assert row["label"] == 1
    if dtype == np.float32:
        assert np.array_equal(np.round(row["pixels"] * 16), row["pixels"] * 16)  # on the grid
    top = 255 if dtype == np.uint8 else 1.0
    assert 0 <= row["pixels"].min() and row["pixels"].max() <= top


@pytest.mark.parametrize("kwargs", [dict(ratio=0), dict(n_per_class=0), dict(n_per_class={1: 0})])
def test_no_synthetic_rows_gives_the_real_rows_marked(image_ds, model, tmp_path, kwargs):
    # ratio=0 is the baseline of an experiment: the same Features, nothing added
    out = hf.augment_dataset(
        image_ds, model, seed=0, progress=False, cache_dir=str(tmp_path), **kwargs
    )
    assert out.features == Features({**FEATURES, "is_synthetic": Value("bool")})
    assert out.num_rows == 20 and not any(out["is_synthetic"])


def test_float_arrays_outside_unit_range_are_rejected(model, tmp_path):
    values = np.linspace(-1, 1, 2 * 64, dtype=np.float32).reshape(2, 1, 8, 8)  # normalized
    ds = Dataset.from_dict(
        {"pixels": values, "label": [0, 1]},
        features=Features(
            {"pixels": datasets.Array3D((1, 8, 8), "float32"), "label": Value("int64")}
        ),
    )
    with pytest.raises(
        ValueError, match=r"float values in \[-1, .*expects float images in \[0, 1\]"
    ):
        hf.augment_dataset(
            ds, model, image_column="pixels", progress=False, cache_dir=str(tmp_path)
        )


def test_imagefolder_on_local_pngs(tmp_path):
    torch.manual_seed(0)
    model = perturb_zero_init(Glow((1, 8, 8), 2, depth=1, hidden=8, levels=17), 0.2).eval()
    images, _ = digit_images(6)
    for k, name in enumerate(["cat", "dog"]):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i, image in enumerate(images[3 * k : 3 * k + 3]):
            image.save(tmp_path / "data" / name / f"{i}.png")
    ds = datasets.load_dataset(
        "imagefolder", data_dir=str(tmp_path / "data"), split="train", cache_dir=str(tmp_path)
    )
    out = hf.augment_dataset(
        ds, model, n_per_class=2, seed=0, progress=False, cache_dir=str(tmp_path)
    )
    assert out.features["image"] == ds.features["image"]
    assert out.features["label"] == ds.features["label"]
    assert out.features["label"].names == ["cat", "dog"]
    assert len(out) == 10 and sum(out["is_synthetic"]) == 4
    out.save_to_disk(str(tmp_path / "saved"))
    assert len(datasets.load_from_disk(str(tmp_path / "saved"))) == 10


def test_synthetic_rows_carry_their_label(digits_glow, tmp_path):
    model, x, y = digits_glow
    images = [PIL.Image.fromarray((c[0] * 255 / 16).round().byte().numpy()) for c in x[:30]]
    ds = Dataset.from_dict(
        {"image": images, "label": y[:30].tolist()},
        features=Features({"image": datasets.Image(), "label": ClassLabel(num_classes=10)}),
    )
    out = hf.augment_dataset(
        ds,
        model,
        n_per_class=10,
        seed=0,
        filter_threshold=0.5,
        progress=False,
        cache_dir=str(tmp_path),
    )
    synthetic = out.select(range(30, 130))
    batch = torch.stack([torch.from_numpy(pixels(r["image"])) for r in synthetic])
    pred = model.classify(image_to_model(batch[:, None].float() / 255, 17)).argmax(1)
    assert (pred == torch.tensor(synthetic["label"][:])).float().mean() >= 0.9


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(n_per_class=1, ratio=1.0), ValueError, "pass n_per_class or ratio, not both"),
        (dict(image_column="pixels"), ValueError, "image_column='pixels' is not a column"),
        (dict(label_column="y"), ValueError, "label_column='y' is not a column"),
        (dict(ratio=-1), ValueError, "ratio must be a number >= 0"),
    ],
)
def test_augment_dataset_argument_errors(image_ds, model, kwargs, error, match):
    with pytest.raises(error, match=match):
        hf.augment_dataset(image_ds, model, progress=False, **kwargs)


def test_augment_dataset_data_errors(image_ds, model):
    big = Dataset.from_dict(
        {"image": [PIL.Image.new("L", (16, 16))], "label": [0]}, features=None
    ).cast_column("image", datasets.Image())
    with pytest.raises(ValueError, match=r"size 16x16, but the model's image_shape is \[1, 8, 8\]"):
        hf.augment_dataset(big, model, progress=False)
    rgb = Dataset.from_dict({"image": [PIL.Image.new("RGB", (8, 8))], "label": [0]})
    rgb = rgb.cast_column("image", datasets.Image())
    with pytest.raises(ValueError, match=r"holds 'RGB' images but the model has 1 channel"):
        hf.augment_dataset(rgb, model, progress=False)
    three = image_ds.cast_column("label", ClassLabel(names=["a", "b", "c"] + ["x"] * 0))
    with pytest.raises(ValueError, match="has 3 classes .* but the model has 10"):
        hf.augment_dataset(three, model, progress=False)
    with pytest.raises(TypeError, match=r"pass one split, e.g. ds\['train'\]"):
        hf.augment_dataset(datasets.DatasetDict({"train": image_ds}), model)


# --- with_transform ---------------------------------------------------------------------------
def test_with_transform_replaces_a_fraction(image_ds, model):
    transform = hf.synthetic_transform(model, p=1.0, seed=0, bank_size=8, mark_column="synthetic")
    ds = image_ds.with_transform(transform)
    row = ds[0]  # a batch of one, as datasets always passes
    assert isinstance(row["image"], PIL.Image.Image) and row["image"].mode == "L"
    assert row["label"] == image_ds[0]["label"] and row["synthetic"] is True
    assert not np.array_equal(pixels(row["image"]), pixels(image_ds[0]["image"]))
    batch = ds[:6]
    assert batch["label"] == image_ds[:6]["label"] and batch["synthetic"] == [True] * 6
    keep = image_ds.with_transform(hf.synthetic_transform(model, p=0.0, bank_size=8))
    assert np.array_equal(pixels(keep[3]["image"]), pixels(image_ds[3]["image"]))
    half = hf.synthetic_transform(model, p=0.5, seed=1, bank_size=8, mark_column="s")
    flags = image_ds.with_transform(half)[:]["s"]
    assert 0 < sum(flags) < 20
    copy = pickle.loads(pickle.dumps(transform))
    assert copy.p == 1.0


def test_with_transform_is_seeded(image_ds, model):
    def first_rows(seed):
        ds = image_ds.with_transform(hf.synthetic_transform(model, p=0.5, seed=seed, bank_size=4))
        return [pixels(image) for image in ds[:10]["image"]]

    a, b = first_rows(3), first_rows(3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_with_transform_in_a_dataloader_and_lists(model):
    values = (np.arange(4 * 64).reshape(4, 1, 8, 8) % 17 / 16).astype(np.float32)
    ds = Dataset.from_dict({"pixels": values, "label": [0, 1, 2, 3]})
    ds = ds.with_transform(
        hf.synthetic_transform(model, p=1.0, image_column="pixels", seed=0, bank_size=4)
    )
    row = ds[1]
    assert np.asarray(row["pixels"]).shape == (1, 8, 8) and isinstance(row["pixels"], list)

    def collate(rows):
        return torch.tensor([r["pixels"] for r in rows]), torch.tensor([r["label"] for r in rows])

    images, labels = next(iter(DataLoader(ds, batch_size=4, collate_fn=collate)))
    assert images.shape == (4, 1, 8, 8) and labels.tolist() == [0, 1, 2, 3]
    assert not np.allclose(images.numpy(), values)


@pytest.mark.parametrize("with_features", [False, True])
def test_with_transform_on_uint8_arrays(model, with_features):
    # datasets hands uint8 arrays back as int64 lists: they are still uint8 images
    values = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 1)).astype(np.uint8)
    features = Features(
        {"image": datasets.Array3D((8, 8, 1), "uint8"), "label": ClassLabel(num_classes=10)}
    )
    ds = Dataset.from_dict({"image": values, "label": [1] * 6}, features=features)
    transform = hf.synthetic_transform(
        model, p=1.0, bank_size=2, seed=0, features=features if with_features else None
    )
    rows = ds.with_transform(transform)[:2]
    out = np.asarray(rows["image"])
    assert out.shape == (2, 8, 8, 1) and out.min() >= 0 and out.max() <= 255
    assert not np.array_equal(out, values[:2]) and rows["label"] == [1, 1]


def test_with_transform_latent_mode_with_coarse_scales(image_ds, model):
    transform = hf.synthetic_transform(model, p=1.0, mode="latent", coarse_scales=1, seed=0)
    assert transform.augment.coarse_scales == 1
    row = image_ds.with_transform(transform)[0]
    assert isinstance(row["image"], PIL.Image.Image) and row["label"] == image_ds[0]["label"]
    with pytest.raises(ValueError, match="coarse_scales is used by mode='latent' only"):
        hf.synthetic_transform(model, p=1.0, coarse_scales=1)


def test_with_transform_errors(image_ds, model):
    bad = image_ds.with_transform(hf.synthetic_transform(model, p=1.0, image_column="img"))
    with pytest.raises(KeyError, match="image_column 'img' is not in the batch"):
        bad[0]
    no_label = image_ds.with_transform(hf.synthetic_transform(model, p=1.0, label_column="y"))
    with pytest.raises(KeyError, match="label_column 'y' is not in the batch"):
        no_label[0]
    raw = image_ds.cast_column("image", datasets.Image(decode=False))
    with pytest.raises(TypeError, match=r"undecoded images \(Image\(decode=False\)\)"):
        raw.with_transform(hf.synthetic_transform(model, p=1.0, bank_size=2))[0]
    with pytest.raises(ValueError, match=r"p must be a probability in \[0, 1\]"):
        hf.synthetic_transform(model, p=2)


# --- streaming --------------------------------------------------------------------------------
def test_synthetic_stream_is_finite_seeded_and_typed(image_ds, model):
    def rows(**kw):
        stream = hf.synthetic_iterable_dataset(model, image_ds.features, seed=0, **kw)
        return list(stream)

    a, b = rows(num_samples=7), rows(num_samples=7)
    assert len(a) == 7
    assert all(r["is_synthetic"] and r["source"] is None for r in a)
    assert all(isinstance(r["image"], PIL.Image.Image) and 0 <= r["label"] < 10 for r in a)
    assert all(
        np.array_equal(pixels(x["image"]), pixels(y["image"])) for x, y in zip(a, b, strict=True)
    )
    sharded = hf.synthetic_iterable_dataset(model, image_ds.features, num_samples=7, num_shards=2)
    assert sharded.num_shards == 2 and len(list(sharded)) == 7
    only_three = rows(num_samples=12, class_weights=[0] * 3 + [1] + [0] * 6)
    assert {r["label"] for r in only_three} == {3}


def test_endless_stream_interleaves_with_real_rows(image_ds, model):
    mixed = hf.interleave_synthetic(image_ds, model, ratio=0.5, seed=0)
    rows = list(mixed)
    real = [r for r in rows if not r["is_synthetic"]]
    synthetic = [r for r in rows if r["is_synthetic"]]
    assert len(real) == 20  # the stream ends when the real rows run out
    assert 0 < len(synthetic) < 25
    assert [r["label"] for r in real] == image_ds["label"][:]
    manual = datasets.interleave_datasets(
        [
            image_ds.to_iterable_dataset(),
            hf.synthetic_iterable_dataset(model, image_ds.features, mark_synthetic=False),
        ],
        probabilities=[0.8, 0.2],
        seed=0,
    )
    assert sum(1 for _ in manual) >= 20


def test_stream_errors(model):
    with pytest.raises(ValueError, match="class_weights must be 10 non-negative numbers"):
        hf.synthetic_iterable_dataset(model, class_weights=[1, 2])
    with pytest.raises(ValueError, match=r"ratio must be a number > 0"):
        hf.interleave_synthetic(Dataset.from_dict({"image": [], "label": []}), model, ratio=0)


# --- tabular ----------------------------------------------------------------------------------
def test_tabular_dataset(tmp_path):
    import pandas as pd

    from flowaug.tabular import TabularFlow

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "x1": rng.normal(size=30),
            "x2": rng.normal(size=30) * 3 + 1,
            "label": [0, 1, 2] * 10,
        }
    )
    ds = Dataset.from_pandas(frame).cast_column("label", ClassLabel(names=["a", "b", "c"]))
    torch.manual_seed(0)
    model = TabularFlow.from_frame(frame, label="label", depth=1, hidden=8)
    model.initialize(*model.encode_frame(frame))
    out = hf.augment_dataset(ds, model, n_per_class=4, seed=0, progress=False)
    again = hf.augment_dataset(ds, model, n_per_class=4, seed=0, progress=False)
    assert out.features == Features({**ds.features, "is_synthetic": Value("bool")})
    synthetic = out.filter(lambda r: r["is_synthetic"])
    assert len(out) == 42 and len(synthetic) == 12
    assert sorted(synthetic["label"]) == [0] * 4 + [1] * 4 + [2] * 4
    assert out["x1"][:] == again["x1"][:]
    by_ratio = hf.augment_dataset(ds, model, ratio=0.5, seed=0, progress=False)
    assert sum(by_ratio["is_synthetic"]) == 15


def _table(n: int = 30):
    import pandas as pd

    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {"x1": rng.normal(size=n), "x2": rng.normal(size=n) * 3 + 1, "label": [0, 1, 2] * (n // 3)}
    )


def test_non_finite_samples_are_refused_before_any_row_is_written(image_ds, model, tmp_path):
    import copy

    from flowaug.tabular import TabularFlow

    broken = copy.deepcopy(model)  # the fixture is shared: never change its weights
    with torch.no_grad():
        broken.prior.base.fill_(float("nan"))
    kwargs = dict(n_per_class=2, seed=0, progress=False, cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="NaN or infinite values; nothing was written"):
        hf.augment_dataset(image_ds, broken, **kwargs)
    frame = _table()
    table = TabularFlow.from_frame(frame, label="label", depth=1, hidden=8)
    table.initialize(*table.encode_frame(frame))
    with torch.no_grad():
        table.prior.base.fill_(float("nan"))
    ds = Dataset.from_pandas(frame)
    with pytest.raises(ValueError, match="NaN or infinite values; nothing was written"):
        hf.augment_dataset(ds, table, **kwargs)


def _table_model_and_ds():
    from flowaug.tabular import TabularFlow

    frame = _table()
    frame["kind"] = ["u", "v", "w"] * 10
    model = TabularFlow.from_frame(frame, label="label", depth=1, hidden=8)
    model.initialize(*model.encode_frame(frame))
    return model, frame


TABLE_CHANGES = {
    "renamed column": (lambda f: f.rename(columns={"x2": "x2_cm"}), "missing ['x2'], unexpected"),
    "missing column": (lambda f: f.drop(columns="x2"), "missing ['x2']"),
    "extra column": (lambda f: f.assign(id=range(len(f))), "unexpected ['id']"),
    "reordered": (lambda f: f[["x2", "x1", "kind", "label"]], "in another order"),
    "dtype": (lambda f: f.assign(x1=f["x1"].astype(str)), "column 'x1' of the dataset has dtype"),
    "integer for float": (lambda f: f.assign(x1=f["x1"].round().astype(int)), "(integer)"),
    "categories": (lambda f: f.assign(kind=["u", "v", "q"] * 10), "not seen when"),
    "classes": (lambda f: f.assign(label=[0, 1, 5] * 10), "classes the model does not know"),
}


@pytest.mark.parametrize("change", sorted(TABLE_CHANGES))
def test_a_table_without_the_models_columns_is_refused(tmp_path, change):
    # synthetic rows would be NaN in a renamed column, lose a missing one or take the wrong
    # type: refused before anything is sampled
    model, frame = _table_model_and_ds()
    apply, fragment = TABLE_CHANGES[change]
    ds = Dataset.from_pandas(apply(frame), preserve_index=False)
    with pytest.raises(ValueError) as info:
        hf.augment_dataset(ds, model, n_per_class=2, progress=False, cache_dir=str(tmp_path))
    assert fragment in str(info.value)
    same = Dataset.from_pandas(frame, preserve_index=False)  # the model's own table: fine
    out = hf.augment_dataset(same, model, n_per_class=2, progress=False, cache_dir=str(tmp_path))
    assert sum(out["is_synthetic"]) == 6


def test_class_names_of_another_table_are_refused(tmp_path):
    model, frame = _table_model_and_ds()
    model.class_names = ["low", "mid", "high"]
    ds = Dataset.from_pandas(frame, preserve_index=False)
    ds = ds.cast_column("label", ClassLabel(names=["setosa", "versicolor", "virginica"]))
    with pytest.raises(ValueError, match="names its classes"):
        hf.augment_dataset(ds, model, n_per_class=2, progress=False, cache_dir=str(tmp_path))
    ds = ds.cast_column("label", ClassLabel(names=["low", "mid", "high"]))
    out = hf.augment_dataset(ds, model, n_per_class=2, progress=False, cache_dir=str(tmp_path))
    assert sum(out["is_synthetic"]) == 6


def test_encode_frame_checks_dtypes_and_ignores_other_columns():
    model, frame = _table_model_and_ds()
    x, _ = model.encode_frame(frame.assign(id=range(30))[["id", *frame.columns]], seed=0)
    assert torch.equal(x, model.encode_frame(frame, seed=0)[0])
    model.encode_frame(frame.assign(x1=frame["x1"].round().astype(int)))  # numbers stay numbers
    with pytest.raises(ValueError, match="column 'x1' of df has dtype"):
        model.encode_frame(frame.assign(x1=frame["x1"].astype(str)))


def test_table_schema_doctest():
    import doctest

    from flowaug.tabular import schema as table_schema

    assert doctest.testmod(table_schema).failed == 0
