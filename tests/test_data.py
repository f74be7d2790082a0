"""Adapters: every supported input form ends as the same tensors, labels and levels."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from flowaug import Glow
from flowaug.data import (
    FlowData,
    as_flow_data,
    find_columns,
    load_data,
    load_hf_dataset,
    load_image_folder,
    load_sklearn,
    resize_images,
    to_hf_dataset,
)


def _uint8_images(n=6, c=1, h=4, w=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, c, h, w), dtype=np.uint8)


def test_sklearn_digits_are_integer_images_with_17_levels():
    data = load_sklearn("digits")
    assert data.x.shape == (1797, 1, 8, 8) and data.x.dtype == torch.int64
    assert int(data.x.min()) == 0 and int(data.x.max()) == 16
    assert data.levels == 17 and data.num_classes == 10 and data.is_image and data.is_discrete
    assert data.class_names == [str(i) for i in range(10)]
    assert data.y.dtype == torch.long and data.y.shape == (1797,)


@pytest.mark.parametrize(
    "name, features, classes", [("iris", 4, 3), ("wine", 13, 3), ("breast_cancer", 30, 2)]
)
def test_sklearn_tables_are_float_features(name, features, classes):
    data = load_sklearn(name)
    assert data.x.dtype == torch.float32 and data.x.shape[1] == features
    assert data.levels is None and not data.is_image and data.num_classes == classes
    assert len(data.class_names) == classes


def test_unknown_sklearn_name_is_refused():
    with pytest.raises(ValueError, match="choose one of"):
        load_sklearn("mnist")


ARRAY_FORMS = {
    "uint8 tensor NCHW": lambda a: torch.from_numpy(a),
    "uint8 numpy NCHW": lambda a: a,
    "uint8 numpy NHWC": lambda a: a.transpose(0, 2, 3, 1).copy(),
    "float tensor on the 1/255 grid": lambda a: torch.from_numpy(a).float() / 255,
}


@pytest.mark.parametrize("form", sorted(ARRAY_FORMS))
@pytest.mark.parametrize("channels", [1, 3])
def test_array_forms_agree(form, channels):
    images = _uint8_images(c=channels)
    labels = np.array([0, 1, 2, 0, 1, 2])
    data = as_flow_data(ARRAY_FORMS[form](images), labels)
    assert data.levels == 256 and data.num_classes == 3
    assert data.x.dtype == torch.uint8
    assert torch.equal(data.x, torch.from_numpy(images))
    assert torch.equal(data.y, torch.from_numpy(labels))


def test_grayscale_without_channel_axis_gets_one():
    data = as_flow_data((torch.from_numpy(_uint8_images()[:, 0]), [0] * 6))
    assert data.event_shape == (1, 4, 4)


def test_small_integer_images_need_levels():
    x = torch.randint(0, 17, (5, 1, 8, 8))
    with pytest.raises(ValueError, match="levels"):
        as_flow_data(x, [0] * 5)
    data = as_flow_data(x, [0] * 5, levels=17)
    assert data.levels == 17 and data.x.dtype == torch.int64
    with pytest.raises(ValueError, match="outside"):
        as_flow_data(x, [0] * 5, levels=4)


def test_continuous_float_images_stay_float():
    x = torch.rand(4, 1, 4, 4)
    data = as_flow_data(x, [0, 1, 0, 1])
    assert data.x.dtype == torch.float32 and data.levels is None and not data.is_discrete


@pytest.mark.parametrize(
    "x, error, fragment",
    [
        (torch.full((2, 1, 4, 4), float("nan")), ValueError, "NaN"),
        (torch.full((2, 3), float("inf")), ValueError, "NaN or inf"),
        (torch.rand(2, 1, 4, 4) * 3, ValueError, r"\[0, 1\]"),
        (torch.rand(2, 2, 2, 2, 2), ValueError, "shape"),
        (np.array([["a", "b"], ["c", "d"]]), TypeError, "numeric"),
    ],
)
def test_bad_inputs_are_refused(x, error, fragment):
    with pytest.raises(error, match=fragment):
        as_flow_data(x, [0, 1])


def test_a_list_pair_reads_like_a_tuple():
    x, y = torch.rand(4, 3), torch.tensor([0, 1, 0, 1])
    a, b = as_flow_data([x, y]), as_flow_data((x, y))
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


def test_a_data_frame_points_to_the_table_path():
    import pandas as pd

    with pytest.raises(TypeError, match=r"flowaug.fit\(df, label=...\)"):
        as_flow_data(pd.DataFrame({"a": [1.0, 2.0], "label": [0, 1]}))


def test_string_labels_become_indices_and_names():
    data = as_flow_data(np.random.rand(4, 3), np.array(["dog", "cat", "dog", "emu"]))
    assert data.class_names == ["cat", "dog", "emu"]
    assert data.y.tolist() == [1, 0, 1, 2] and data.num_classes == 3


def test_label_count_must_match():
    with pytest.raises(ValueError, match="one label per sample"):
        as_flow_data(np.random.rand(4, 3), [0, 1])


class PairDataset(torch.utils.data.Dataset):
    classes = ["zero", "one"]

    def __init__(self, images, as_pil):
        self.images, self.as_pil = images, as_pil

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        img = self.images[i]
        item = Image.fromarray(img[0]) if self.as_pil else torch.from_numpy(img)
        return item, i % 2


@pytest.mark.parametrize("as_pil", [True, False])
def test_torch_dataset_of_pairs(as_pil):
    images = _uint8_images()
    data = as_flow_data(PairDataset(images, as_pil))
    assert torch.equal(data.x, torch.from_numpy(images))
    assert data.y.tolist() == [0, 1, 0, 1, 0, 1]
    assert data.class_names == ["zero", "one"] and data.levels == 256


def test_torch_dataset_with_mixed_sizes_is_refused():
    class Mixed(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return torch.zeros(1, 4 + 2 * i, 4, dtype=torch.uint8), 0

    with pytest.raises(ValueError, match="resize"):
        as_flow_data(Mixed())


def _hf_image_dataset():
    images = _uint8_images(n=4)
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"])}
    )
    ds = datasets.Dataset.from_dict(
        {"image": [Image.fromarray(im[0]) for im in images], "label": [0, 1, 1, 0]},
        features=features,
    )
    return ds, images


def test_hf_dataset_with_image_feature_and_class_label():
    ds, images = _hf_image_dataset()
    data = as_flow_data(ds)
    assert torch.equal(data.x, torch.from_numpy(images))
    assert data.class_names == ["cat", "dog"] and data.y.tolist() == [0, 1, 1, 0]


def test_hf_dataset_with_array_column_and_tabular_columns():
    images = _uint8_images(n=4)
    ds = datasets.Dataset.from_dict({"pixels": images[:, 0].tolist(), "label": [0, 1, 0, 1]})
    data = as_flow_data(ds, image_column="pixels", levels=256)
    assert torch.equal(data.x, torch.from_numpy(images).long())
    table = datasets.Dataset.from_dict({"a": [0.5, 1.5], "b": [1, 2], "target": [0, 1]})
    data = as_flow_data(table)
    assert data.x.tolist() == [[0.5, 1.0], [1.5, 2.0]] and data.y.tolist() == [0, 1]
    with pytest.raises(ValueError, match="not a column"):
        as_flow_data(table, label_column="nope")


def test_load_data_reads_saved_hf_datasets(tmp_path):
    ds, images = _hf_image_dataset()
    datasets.DatasetDict({"train": ds, "test": ds}).save_to_disk(str(tmp_path / "dd"))
    data = load_data(tmp_path / "dd")
    assert torch.equal(data.x, torch.from_numpy(images)) and data.class_names == ["cat", "dog"]


def test_load_data_reads_image_folders(tmp_path):
    images = _uint8_images(n=4, c=3)
    for i, img in enumerate(images):
        folder = tmp_path / ("b" if i % 2 else "a")
        folder.mkdir(exist_ok=True)
        Image.fromarray(img.transpose(1, 2, 0)).save(folder / f"{i}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    data = load_data(tmp_path)
    assert data.class_names == ["a", "b"] and data.event_shape == (3, 4, 4)
    assert data.y.tolist() == [0, 0, 1, 1]
    assert torch.equal(data.x[0], torch.from_numpy(images[0]))


def test_image_folder_without_images_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        load_image_folder(tmp_path)


@pytest.mark.parametrize("spec", ["sklearn:digits", "sklearn:iris"])
def test_load_data_sklearn_specs(spec):
    assert isinstance(load_data(spec), FlowData)


def test_load_data_missing_path():
    with pytest.raises(FileNotFoundError, match="sklearn:"):
        load_data("/no/such/folder")
    with pytest.raises(FileNotFoundError, match="^--like '/no/such/folder': no such file"):
        load_data("/no/such/folder", option="--like")


def test_integer_batches_get_fresh_noise_every_time():
    """Integer data stays integer; the model dequantizes each batch with new noise."""
    data = load_sklearn("digits").subset(range(8))
    model = Glow((1, 8, 8), num_classes=10, depth=1, hidden=4, levels=data.levels)
    first, second = model.prepare_batch(data.x), model.prepare_batch(data.x)
    assert first.is_floating_point() and not torch.equal(first, second)
    for batch in (first, second):
        assert torch.equal((batch * data.levels).floor().long(), data.x)


def test_subset_keeps_metadata():
    data = load_sklearn("digits")
    part = data.subset([3, 1])
    assert part.levels == 17 and part.class_names == data.class_names and len(part) == 2
    assert torch.equal(part.x[0], data.x[3]) and part.y.tolist() == [3, 1]


@pytest.mark.parametrize("channels", [1, 3])
def test_to_hf_dataset_round_trips_integer_images(channels):
    images = _uint8_images(c=channels)
    data = as_flow_data(images, [0, 1, 0, 1, 0, 1], class_names=["a", "b"])
    ds = to_hf_dataset(data)
    assert isinstance(ds.features["image"], datasets.Image)
    assert ds.features["label"].names == ["a", "b"]
    back = as_flow_data(ds)
    assert torch.equal(back.x, data.x) and torch.equal(back.y, data.y)


def test_to_hf_dataset_of_digits_and_features():
    digits = load_sklearn("digits").subset(range(5))
    pixels = np.asarray(to_hf_dataset(digits)[0]["image"])
    assert pixels.tolist() == np.round(digits.x[0, 0].numpy() * 255 / 16).astype(int).tolist()
    iris = load_sklearn("iris").subset(range(5))
    table = to_hf_dataset(iris)
    assert list(table.features)[:-1] == iris.feature_names
    assert torch.allclose(as_flow_data(table).x, iris.x)
    with pytest.raises(ValueError, match="no labels"):
        to_hf_dataset(FlowData(x=iris.x, y=None))


def test_load_hf_dataset_reads_specs_and_saved_splits(tmp_path):
    ds, _ = _hf_image_dataset()
    assert load_hf_dataset("sklearn:iris").num_rows == 150
    datasets.DatasetDict({"only": ds}).save_to_disk(str(tmp_path / "one"))
    assert load_hf_dataset(tmp_path / "one").num_rows == 4
    datasets.DatasetDict({"a": ds, "b": ds}).save_to_disk(str(tmp_path / "two"))
    with pytest.raises(ValueError, match="none is 'train'"):
        load_hf_dataset(tmp_path / "two")


def test_find_columns_by_type_then_by_name():
    ds, _ = _hf_image_dataset()
    assert find_columns(ds.features) == ("image", "label")
    plain = datasets.Dataset.from_dict({"img": [[1]], "target": [0]})
    assert find_columns(plain.features) == ("img", "target")
    with pytest.raises(ValueError, match="image_column 'nope' is not a column"):
        find_columns(plain.features, image_column="nope")


def test_labelled_of_unlabelled_data_is_empty():
    data = as_flow_data(torch.rand(3, 2))
    assert data.y is None and len(data.labelled()) == 0 and len(data.unlabelled()) == 3


def test_resize_images_keeps_levels_and_the_old_path_still_imports():
    from flowaug.data.folders import resize_images as old_path

    digits = load_sklearn("digits").subset(range(4))
    big = resize_images(digits, 16)
    assert old_path is resize_images and big.event_shape == (1, 16, 16)
    assert big.x.dtype == digits.x.dtype and int(big.x.max()) <= 16
    with pytest.raises(ValueError, match="even number"):
        resize_images(digits, 5)
    with pytest.raises(ValueError, match="applies to images"):
        resize_images(load_sklearn("iris"), 8)
