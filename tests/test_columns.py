"""Column encoders: round trips keep values, dtypes, categories and bounds; bad input fails."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from flowaug.flows.tabular import redequantize
from flowaug.tabular import TableEncoder


def mixed_frame(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "f64": rng.normal(10, 3, n),
            "f32": rng.gamma(2.0, 1.0, n).astype(np.float32),
            "i64": rng.integers(-5, 30, n),
            "i32": rng.integers(0, 4, n).astype(np.int32),
            "nullable_int": pd.array(rng.integers(0, 100, n), dtype="Int64"),
            "flag": rng.random(n) < 0.3,
            "nullable_flag": pd.array(rng.random(n) < 0.6, dtype="boolean"),
            "cat": pd.Categorical(
                rng.choice(["lo", "mid", "hi"], n),
                categories=["lo", "mid", "hi", "never"],
                ordered=True,
            ),
            "obj": pd.Series(rng.choice(["a", "b", "c", "d"], n), dtype=object),
            "text": pd.Series(rng.choice(["x", "y"], n), dtype="str"),
            "string": pd.array(rng.choice(["p", "q", "r"], n), dtype="string"),
            "const_num": np.full(n, 7.5),
            "const_text": pd.Series(["same"] * n, dtype="str"),
            "int_cat": rng.choice([10, 20, 30], n),
            "label": rng.choice(["neg", "pos"], n),
        }
    )


def assert_same_columns(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    for name in a.columns:
        assert a[name].dtype == b[name].dtype, (name, a[name].dtype, b[name].dtype)
        if isinstance(a[name].dtype, pd.CategoricalDtype):
            assert list(a[name].cat.categories) == list(b[name].cat.categories)
            assert a[name].cat.ordered == b[name].cat.ordered


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return mixed_frame()


@pytest.fixture(scope="module")
def encoder(frame: pd.DataFrame) -> TableEncoder:
    return TableEncoder.fit(frame, label="label", categorical=["int_cat"])


def test_model_dimensions_per_column_kind(encoder: TableEncoder) -> None:
    widths = {c.name: (c.kind, c.width) for c in encoder.columns}
    assert widths["f64"] == ("continuous", 1)
    assert widths["i64"] == ("integer", 1)
    assert widths["flag"] == ("categorical", 1)  # two categories share one dimension
    assert widths["cat"] == ("categorical", 3)  # one-hot over the *observed* categories
    assert widths["obj"] == ("categorical", 4)
    assert widths["const_num"] == ("constant", 0)
    assert widths["const_text"] == ("constant", 0)
    assert widths["int_cat"] == ("categorical", 3)
    assert encoder.dim == sum(w for _, w in widths.values())
    assert "label" not in widths


@pytest.mark.parametrize("dequantize", [True, False])
def test_round_trip_keeps_values_and_dtypes(frame, encoder, dequantize) -> None:
    x = encoder.encode(frame, seed=1, dequantize=dequantize)
    assert x.shape == (len(frame), encoder.dim) and np.isfinite(x).all()
    back = encoder.decode(x)
    features = frame.drop(columns="label")
    assert_same_columns(back, features)
    for name in features.columns:
        if pd.api.types.is_float_dtype(features[name].dtype):
            np.testing.assert_allclose(back[name], features[name], rtol=1e-6, atol=1e-6)
        else:
            assert back[name].tolist() == features[name].tolist(), name


def test_round_trip_through_float32(frame, encoder) -> None:
    x32 = torch.as_tensor(encoder.encode(frame, seed=3), dtype=torch.float32)
    back = encoder.decode(x32)
    for name in ("i64", "i32", "nullable_int", "cat", "obj", "int_cat", "flag"):
        assert back[name].tolist() == frame[name].tolist(), name


def test_discrete_values_sit_inside_their_cells(frame, encoder) -> None:
    x = encoder.encode(frame, seed=5)
    v = x * encoder.std + encoder.mean
    sl = encoder.slices[encoder.feature_names.index("i64")]
    cell = v[:, sl][:, 0]
    assert (np.floor(cell) == frame["i64"].to_numpy()).all()
    frac = cell - np.floor(cell)
    assert frac.min() > 0 and frac.max() < 1 and frac.std() > 0.1  # really noised


def test_decoding_any_point_gives_valid_values(frame, encoder) -> None:
    rng = np.random.default_rng(0)
    x = 6.0 * rng.standard_normal((500, encoder.dim))  # far outside the data
    out = encoder.decode(x)
    assert_same_columns(out, frame.drop(columns="label"))
    for name in ("f64", "f32", "i64", "i32", "nullable_int"):
        lo, hi = frame[name].min(), frame[name].max()
        assert out[name].min() >= lo and out[name].max() <= hi, name
    assert set(out["cat"]) <= set(frame["cat"]) and "never" not in set(out["cat"])
    for name in ("obj", "text", "string", "int_cat", "flag", "nullable_flag"):
        assert set(out[name]) <= set(frame[name]), name
    assert set(out["const_num"]) == {7.5} and set(out["const_text"]) == {"same"}
    assert not out.isna().any().any()


def test_config_survives_json(frame, encoder) -> None:
    config = json.loads(json.dumps(encoder.to_config()))
    again = TableEncoder.from_config(config)
    np.testing.assert_array_equal(again.encode(frame, seed=2), encoder.encode(frame, seed=2))
    x = np.random.default_rng(1).standard_normal((50, encoder.dim))
    pd.testing.assert_frame_equal(again.decode(x), encoder.decode(x))
    assert again.label.classes == ["neg", "pos"]


def test_quantile_transform_round_trip_and_bounds() -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"skewed": rng.lognormal(0, 1.5, 300), "y": rng.integers(0, 2, 300)})
    enc = TableEncoder.fit(df, label="y", continuous="quantile")
    x = enc.encode(df)
    assert abs(x.mean()) < 0.05 and abs(x.std() - 1) < 0.05
    assert abs(((x - x.mean()) ** 3).mean()) < 0.1  # Gaussianized: no skew left
    np.testing.assert_allclose(enc.decode(x)["skewed"], df["skewed"], rtol=1e-6)
    wild = enc.decode(10 * rng.standard_normal((200, 1)))["skewed"]
    assert wild.min() >= df["skewed"].min() and wild.max() <= df["skewed"].max()


def test_clip_false_leaves_floats_unbounded() -> None:
    df = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0]})
    enc = TableEncoder.fit(df, clip=False)
    assert enc.decode(np.array([[10.0]]))["a"].iloc[0] > 3.0
    assert TableEncoder.fit(df).decode(np.array([[10.0]]))["a"].iloc[0] == 3.0


def test_labels_keep_values_and_dtype() -> None:
    cat = pd.Categorical(["b", "a", "b", "c"], categories=["c", "b", "a", "z"])
    for labels in ([3, 1, 3, 2], ["b", "a", "b", "c"], cat, [True, False, True, True]):
        df = pd.DataFrame({"v": [0.1, 0.2, 0.3, 0.4], "y": labels})
        enc = TableEncoder.fit(df, label="y")
        idx = enc.encode_labels(df)
        back = enc.label.decode(idx)
        assert back.tolist() == df["y"].tolist() and back.dtype == df["y"].dtype
    assert enc.num_classes == 2


def test_missing_values_name_the_column() -> None:
    df = pd.DataFrame({"ok": [1.0, 2.0, 3.0], "holes": [1.0, np.nan, 3.0]})
    with pytest.raises(ValueError, match="'holes'.*1 missing"):
        TableEncoder.fit(df)
    df = pd.DataFrame({"ok": [1.0, 2.0, 3.0], "y": ["a", None, "b"]})
    with pytest.raises(ValueError, match="label column 'y'"):
        TableEncoder.fit(df, label="y")


def test_impute_fills_instead_of_failing() -> None:
    df = pd.DataFrame(
        {
            "f": [1.0, np.nan, 3.0, 4.0],
            "n": pd.array([1, 2, pd.NA, 2], dtype="Int64"),
            "c": ["a", "b", None, "b"],
        }
    )
    enc = TableEncoder.fit(df, impute="mean")
    fills = {c.name: c.fill for c in enc.columns}
    assert fills == {"f": pytest.approx(8 / 3), "n": 2, "c": "b"}
    back = enc.decode(enc.encode(df, seed=0))
    assert not back.isna().any().any()
    assert back["n"].dtype == df["n"].dtype and back["c"].tolist() == ["a", "b", "b", "b"]
    assert TableEncoder.fit(df, impute="mode").columns[0].fill == 1.0
    with pytest.raises(ValueError, match="impute"):
        TableEncoder.fit(df, impute="median")


def test_bad_inputs_raise_clear_errors(encoder, frame) -> None:
    with pytest.raises(TypeError, match="DataFrame"):
        TableEncoder.fit(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="label='nope'"):
        TableEncoder.fit(frame, label="nope")
    with pytest.raises(ValueError, match="categorical"):
        TableEncoder.fit(frame, categorical=["nope"])
    dates = pd.DataFrame({"when": pd.date_range("2020-01-01", periods=3)})
    with pytest.raises(TypeError, match="'when'"):
        TableEncoder.fit(dates)
    unseen = frame.copy()
    unseen["obj"] = unseen["obj"].astype(str).replace("a", "new")
    with pytest.raises(ValueError, match="'obj'.*'new'"):
        encoder.encode(unseen)
    with pytest.raises(ValueError, match="lacks the column"):
        encoder.encode(frame.drop(columns="f64"))
    with pytest.raises(ValueError, match=r"shape \[N, "):
        encoder.decode(np.zeros((2, encoder.dim + 1)))


def test_numpy_integer_column_names_survive_json() -> None:
    # pd.DataFrame(array) then dropping a column leaves numpy ints as column names
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(30, 4)))
    df[4] = rng.integers(0, 2, 30)
    df = df.drop(columns=1)
    enc = TableEncoder.fit(df, label=4)
    config = json.loads(json.dumps(enc.to_config()))
    assert [c.name for c in enc.columns] == [0, 2, 3]
    again = TableEncoder.from_config(config)
    np.testing.assert_array_equal(again.encode(df, seed=0), enc.encode(df, seed=0))


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_infinite_values_name_the_column(value) -> None:
    df = pd.DataFrame({"ok": [1.0, 2.0, 3.0], "spike": [1.0, value, 3.0]})
    with pytest.raises(ValueError, match="'spike' has 1 infinite value"):
        TableEncoder.fit(df)
    enc = TableEncoder.fit(df.replace([np.inf, -np.inf], 2.0))
    with pytest.raises(ValueError, match="'spike' has 1 infinite value"):
        enc.encode(df)


@pytest.mark.parametrize("categorical", ["zip", ["zip"], ("zip",)])
def test_categorical_takes_one_name_or_a_list(categorical) -> None:
    # a string is one column name, never a sequence of one-letter names
    df = pd.DataFrame({"zip": [1, 2, 3, 1], "z": [1, 2, 1, 2], "i": [0, 1, 0, 1]})
    enc = TableEncoder.fit(df, categorical=categorical)
    assert [c.kind for c in enc.columns] == ["categorical", "integer", "integer"]


def test_integer_columns_reject_fractional_values_when_encoding() -> None:
    df = pd.DataFrame({"count": [1, 2, 3, 4], "f": [0.1, 0.2, 0.3, 0.4]})
    enc = TableEncoder.fit(df)
    with pytest.raises(ValueError, match="integer column 'count' holds non-integer values"):
        enc.encode(df.assign(count=df["count"] + 0.5))


def test_more_bad_inputs_raise_clear_errors(frame) -> None:
    with pytest.raises(TypeError, match="label must be one column name"):
        TableEncoder.fit(frame, label=["label"])
    with pytest.raises(TypeError, match="categorical must be a column name or a list"):
        TableEncoder.fit(frame, categorical=1.5)
    with pytest.raises(TypeError, match="'z' has complex dtype"):
        TableEncoder.fit(pd.DataFrame({"z": np.array([1 + 1j, 2 - 1j, 3j])}))


def test_redequantize_redraws_noise_but_keeps_records(frame, encoder) -> None:
    x = torch.as_tensor(encoder.encode(frame, seed=0))
    mean, std = torch.as_tensor(encoder.mean), torch.as_tensor(encoder.std)
    groups = encoder.discrete_groups()
    fresh = redequantize(x, groups, mean, std, torch.Generator().manual_seed(1))
    pd.testing.assert_frame_equal(encoder.decode(fresh), encoder.decode(x))
    continuous = torch.ones(encoder.dim, dtype=torch.bool)
    for start, width, _, _ in groups:  # every dimension outside a discrete cell is continuous
        continuous[start : start + width] = False
    assert torch.equal(fresh[:, continuous], x[:, continuous])
    assert (fresh[:, ~continuous] - x[:, ~continuous]).abs().max() > 1e-3
    again = redequantize(x, groups, mean, std, torch.Generator().manual_seed(1))
    assert torch.equal(again, fresh)
