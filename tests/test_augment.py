"""FlowAugment: the torchvision v2 contract, batches, determinism, workers, labels, errors."""

from __future__ import annotations

import doctest
import pickle
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import perturb_zero_init
from torch.utils._pytree import tree_flatten
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

import flowaug.integrations.augment.transform
from flowaug import FlowAugment, Glow, SyntheticBank
from flowaug.pixels import image_to_model


@pytest.fixture(scope="module")
def bank(model):
    return SyntheticBank(model, n_per_class=16, seed=0)


def grid_image(seed: int = 0, levels: int = 17) -> torch.Tensor:
    """A float image on the model's intensity grid, ``[1, 8, 8]``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, levels, (1, 8, 8), generator=g).float() / (levels - 1)


INPUTS = {
    "pil": lambda: PIL.Image.fromarray((grid_image()[0] * 255).round().byte().numpy(), mode="L"),
    "uint8": lambda: (grid_image() * 255).round().to(torch.uint8),
    "float32": grid_image,
    "float64": lambda: grid_image().double(),
    "hw_tensor": lambda: grid_image()[0],
    "tv_image_uint8": lambda: tv_tensors.Image((grid_image() * 255).round().to(torch.uint8)),
    "tv_image_float": lambda: tv_tensors.Image(grid_image()),
}


def assert_same_kind(out, inpt):
    """Type, shape, dtype and value range of an image output match its input."""
    assert type(out) is type(inpt)
    if isinstance(inpt, PIL.Image.Image):
        assert out.mode == inpt.mode and out.size == inpt.size
        return
    assert out.shape == inpt.shape and out.dtype == inpt.dtype and out.device == inpt.device
    if inpt.dtype == torch.uint8:
        assert 0 <= int(out.min()) and int(out.max()) <= 255
    else:
        assert 0 <= float(out.min()) and float(out.max()) <= 1


# --- per sample -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(INPUTS))
@pytest.mark.parametrize("mode", ["resample", "latent"])
def test_output_matches_input_type(model, bank, kind, mode):
    aug = FlowAugment(model, p=1.0, mode=mode, bank=bank if mode == "resample" else None, seed=0)
    inpt = INPUTS[kind]()
    out = aug(inpt)  # unlabeled: the flow's own class
    assert_same_kind(out, inpt)
    out, label = aug(inpt, 4)
    assert_same_kind(out, inpt)
    assert label == 4
    as_array = np.asarray(out) if isinstance(out, PIL.Image.Image) else out.numpy()
    before = np.asarray(inpt) if isinstance(inpt, PIL.Image.Image) else inpt.numpy()
    assert not np.array_equal(as_array, before)


@pytest.mark.parametrize("kind", list(INPUTS))
def test_p0_passes_everything_through_by_identity(model, bank, kind):
    aug = FlowAugment(model, p=0.0, bank=bank, seed=0)
    inpt = INPUTS[kind]()
    assert aug(inpt) is inpt
    sample = (inpt, 3)
    assert aug(sample) is sample


@pytest.mark.parametrize(
    "make_sample",
    [
        lambda x: (x, 7),
        lambda x: [x, 7],
        lambda x: (x, torch.tensor(7)),
        lambda x: (x, np.int64(7)),
        lambda x: {"image": x, "label": 7, "meta": object()},
        lambda x: {"img": x, "class_label": torch.tensor([7]), "name": "a"},
        lambda x: (x, {"labels": 7, "id": 3}),
    ],
    ids=["tuple", "list", "tensor", "numpy", "dict", "dict-key", "target-dict"],
)
def test_labels_are_found_and_passed_through(model, bank, make_sample):
    aug = FlowAugment(model, p=1.0, bank=bank, seed=0)
    sample = make_sample(grid_image())
    out = aug(sample)
    flat_in, spec_in = tree_flatten(sample)
    flat_out, spec_out = tree_flatten(out)
    assert spec_in == spec_out
    assert type(out) is type(sample)
    for a, b in zip(flat_in[1:], flat_out[1:], strict=True):
        assert a is b
    assert not torch.equal(flat_out[0], flat_in[0])


def test_resample_draws_from_the_labelled_class(model, bank):
    aug = FlowAugment(model, p=1.0, bank=bank, seed=0)
    stored = {bank.get(7, i).numpy().tobytes() for i in range(bank.n_per_class)}
    for seed in range(5):
        out, _ = aug(grid_image(seed), 7)
        assert out.numpy().tobytes() in stored


def test_inside_compose_with_other_transforms(model, bank):
    pipeline = v2.Compose(
        [FlowAugment(model, p=1.0, bank=bank, seed=0), v2.ToDtype(torch.float32, scale=True)]
    )
    x = (grid_image() * 255).round().to(torch.uint8)
    out, label = pipeline(x, 2)
    assert out.dtype == torch.float32 and out.shape == (1, 8, 8) and label == 2
    image, label = pipeline(tv_tensors.Image(x), 2)
    assert isinstance(image, tv_tensors.Image)


def test_latent_strength_zero_is_the_identity(model):
    aug = FlowAugment(model, p=1.0, mode="latent", strength=0.0, seed=0)
    x = grid_image(3)
    assert torch.equal(aug(x, 5)[0], x)
    x8 = (x * 255).round().to(torch.uint8)
    assert torch.equal(aug(x8, 5)[0], x8)
    moved = FlowAugment(model, p=1.0, mode="latent", strength=1.0, seed=0)
    assert not torch.equal(moved(x, 5)[0], x)


@pytest.mark.parametrize("coarse_scales", [1, 2])
def test_coarse_scales_keeps_the_finer_latents_of_the_input(model, monkeypatch, coarse_scales):
    sizes = model.latent_scale_sizes
    assert len(sizes) == 2 and sum(sizes) == model.event_dim
    x = torch.stack([grid_image(i) for i in range(4)])
    y = torch.tensor([1, 3, 5, 7])
    eps_in = model.encode(image_to_model(x, 17), y)
    decoded = []
    decode = model.decode
    monkeypatch.setattr(model, "decode", lambda eps, y: decoded.append(eps) or decode(eps, y))
    aug = FlowAugment(model, p=1.0, mode="latent", strength=1.0, coarse_scales=coarse_scales)
    aug(x, y)
    fine = sum(sizes[: len(sizes) - coarse_scales])
    assert torch.equal(decoded[0][:, :fine], eps_in[:, :fine])
    assert (decoded[0][:, fine:] - eps_in[:, fine:]).abs().min() > 0


def test_coarse_scales_over_every_scale_equals_the_default(model):
    x = torch.stack([grid_image(i) for i in range(4)])
    y = torch.tensor([0, 2, 4, 6])
    every = FlowAugment(model, p=1.0, mode="latent", seed=3, coarse_scales=2)(x, y)[0]
    default = FlowAugment(model, p=1.0, mode="latent", seed=3)(x, y)[0]
    assert torch.equal(every, default)


# --- check_transform-style checks -------------------------------------------------------------
def mixed_sample(image):
    return {
        "image": image,
        "boxes": tv_tensors.BoundingBoxes(
            torch.tensor([[0, 0, 4, 4]]), format="XYXY", canvas_size=(8, 8)
        ),
        "mask": tv_tensors.Mask(torch.zeros(8, 8, dtype=torch.bool)),
        "int": 0,
        "float": 0.0,
        "bool": True,
        "none": None,
        "str": "str",
        "path": Path("path"),
        "object": object(),
        "tensor": torch.empty(5),
        "array": np.empty(5),
    }


@pytest.mark.parametrize("kind", ["pil", "uint8", "float32", "tv_image_uint8", "tv_image_float"])
@pytest.mark.parametrize("container", [dict, list, tuple])
def test_check_transform_mixed_sample(model, bank, kind, container):
    aug = pickle.loads(pickle.dumps(FlowAugment(model, p=1.0, bank=bank, seed=0)))
    sample = mixed_sample(INPUTS[kind]())
    sample = sample if container is dict else container(sample.values())
    out = aug(sample)
    flat_in, spec_in = tree_flatten(sample)
    flat_out, spec_out = tree_flatten(out)
    assert spec_out == spec_in
    needs = aug._needs_transform_list(flat_in)
    assert sum(needs) == 1
    for a, b, need in zip(flat_in, flat_out, needs, strict=True):
        if need:
            assert_same_kind(b, a)
        else:
            assert b is a


def test_pickle_round_trip_keeps_behaviour(model, bank):
    aug = FlowAugment(model, p=0.5, bank=bank, seed=3)
    copy = pickle.loads(pickle.dumps(aug))
    fresh = FlowAugment(model, p=0.5, bank=bank, seed=3)
    for seed in range(10):
        x = grid_image(seed)
        assert torch.equal(copy(x, seed % 10)[0], fresh(x, seed % 10)[0])
    assert "FlowAugment(model=Glow[1, 8, 8], p=0.5" in repr(aug)


# --- determinism ------------------------------------------------------------------------------
def run_sequence(aug, n=20):
    return [aug(grid_image(i), i % 10)[0] for i in range(n)]


def test_same_seed_same_outputs(model):
    a = run_sequence(FlowAugment(model, p=0.5, bank_size=4, seed=11))
    b = run_sequence(FlowAugment(model, p=0.5, bank_size=4, seed=11))
    c = run_sequence(FlowAugment(model, p=0.5, bank_size=4, seed=12))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


def test_no_seed_follows_torch_manual_seed(model):
    torch.manual_seed(5)
    a = run_sequence(FlowAugment(model, p=0.5, bank_size=4, mode="latent"))
    torch.manual_seed(5)
    b = run_sequence(FlowAugment(model, p=0.5, bank_size=4, mode="latent"))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_p_is_the_replaced_fraction(model, bank):
    aug = FlowAugment(model, p=0.3, bank=bank, seed=0)
    x = grid_image()
    replaced = sum(aug(x, 1)[0] is not x for _ in range(1000))
    assert 230 <= replaced <= 370


# --- batches ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("wrap", [False, True])
def test_batch_replaces_a_fraction_in_one_pass(model, bank, dtype, wrap):
    aug = FlowAugment(model, p=0.5, bank=bank, seed=0)
    images = torch.stack([grid_image(i) for i in range(256)])
    if dtype == torch.uint8:
        images = (images * 255).round().to(torch.uint8)
    if wrap:
        images = tv_tensors.Image(images)
    labels = torch.arange(256) % 10
    out, out_labels = aug(images, labels)
    assert out_labels is labels
    assert type(out) is type(images) and out.dtype == dtype and out.shape == images.shape
    changed = (out != images).flatten(1).any(1)
    assert 0.35 < changed.float().mean() < 0.65
    assert torch.equal(out[~changed], images[~changed])
    assert torch.equal(images, images.clone())  # the input batch is not modified in place


@pytest.mark.parametrize("as_labels", [torch.tensor, np.array, list, tuple])
def test_batch_labels_of_any_container_pick_the_class(model, bank, as_labels):
    # a batch's labels as a list or an array are labels too, never passed over for the flow's
    # own class
    aug = FlowAugment(model, p=1.0, bank=bank, seed=0)
    classes = [3, 1, 2, 0, 5, 6, 7, 8]
    out, _ = aug(torch.stack([grid_image(i) for i in range(8)]), as_labels(classes))
    for image, c in zip(out, classes, strict=True):
        stored = {bank.get(c, i).numpy().tobytes() for i in range(bank.n_per_class)}
        assert image.numpy().tobytes() in stored


@pytest.mark.parametrize("p", [np.float32(0.5), np.float64(0.5), 1])
def test_numpy_and_int_probabilities_are_accepted(model, bank, p):
    assert FlowAugment(model, p=p, bank=bank).p == float(p)


def test_exact_label_key_wins_over_other_label_keys(model, bank):
    aug = FlowAugment(model, p=1.0, bank=bank, seed=0)
    stored = {bank.get(7, i).numpy().tobytes() for i in range(bank.n_per_class)}
    out = aug({"image": grid_image(), "label_name": "seven", "label": 7})
    assert out["image"].numpy().tobytes() in stored and out["label_name"] == "seven"


def test_batch_in_a_dict_and_unlabeled(model, bank):
    aug = FlowAugment(model, p=1.0, bank=bank, seed=0)
    images = torch.rand(8, 1, 8, 8)
    batch = {"image": images, "label": torch.arange(8), "ids": list(range(8))}
    out = aug(batch)
    assert out["label"] is batch["label"]
    assert out["ids"] == batch["ids"]  # lists are containers: rebuilt, items the same objects
    assert out["image"].shape == images.shape
    alone = aug(images)
    assert alone.shape == images.shape and not torch.equal(alone, images)


def test_batch_latent_mode(model):
    aug = FlowAugment(model, p=1.0, mode="latent", strength=0.0, seed=0)
    images = torch.stack([grid_image(i) for i in range(6)])
    out, _ = aug(images, torch.arange(6))
    assert torch.equal(out, images)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", ["resample", "latent"])
def test_batch_on_the_gpu(model, mode):
    aug = FlowAugment(model, p=0.5, mode=mode, bank_size=4, seed=0).to("cuda")
    images = torch.rand(32, 1, 8, 8, device="cuda")
    labels = torch.arange(32, device="cuda") % 10
    out, out_labels = aug(images, labels)
    assert out.device == images.device and out_labels is labels
    assert out.shape == images.shape and 0 <= float(out.min()) and float(out.max()) <= 1
    aug.cpu()


# --- labels are preserved (trained model) -----------------------------------------------------
def flow_classes(model, images01):
    return model.classify(image_to_model(images01, 17)).argmax(1)


def test_latent_mode_preserves_labels(digits_glow):
    model, x, y = digits_glow
    images, labels = x[:300].float() / 16, y[:300]
    aug = FlowAugment(model, p=1.0, mode="latent", strength=0.6, seed=0)
    out, _ = aug(images, labels)
    assert (out != images).any()
    assert (flow_classes(model, out) == labels).float().mean() >= 0.9


def test_unlabeled_inputs_keep_the_flows_class(digits_glow):
    model, x, _ = digits_glow
    images = x[:200].float() / 16
    before = flow_classes(model, images)
    for mode in ("latent", "resample"):
        aug = FlowAugment(model, p=1.0, mode=mode, bank_size=8, seed=0)
        after = flow_classes(model, aug(images))
        assert (after == before).float().mean() >= 0.9
    single = FlowAugment(model, p=1.0, mode="latent", seed=0)
    assert flow_classes(model, single(images[0])[None])[0] == before[0]


def test_resample_mode_preserves_labels(digits_glow):
    model, _, _ = digits_glow
    aug = FlowAugment(model, p=1.0, bank_size=20, seed=0)
    labels = torch.arange(200) % 10
    out, _ = aug(torch.zeros(200, 1, 8, 8), labels)
    assert (flow_classes(model, out) == labels).float().mean() >= 0.9


# --- DataLoader workers -----------------------------------------------------------------------
class PairDataset(Dataset):
    """Grid images with int labels; ``transforms(image, label)`` as in torchvision v2."""

    def __init__(self, n, transforms):
        self.n, self.transforms = n, transforms

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.transforms(grid_image(i), i % 10)


@pytest.mark.parametrize("context,workers", [("fork", 2), ("spawn", 1)])
def test_dataloader_workers(model, bank, context, workers):
    aug = FlowAugment(model, p=0.5, bank=bank, seed=0)
    dataset = PairDataset(16, v2.Compose([aug]))

    def epoch():
        loader = DataLoader(
            dataset,
            batch_size=4,
            num_workers=workers,
            multiprocessing_context=context,
            generator=torch.Generator().manual_seed(0),
        )
        return [(images, labels) for images, labels in loader]

    first = epoch()
    assert [labels.tolist() for _, labels in first] == [
        [i % 10 for i in range(s, s + 4)] for s in range(0, 16, 4)
    ]
    images = torch.cat([b[0] for b in first])
    originals = torch.stack([grid_image(i) for i in range(16)])
    replaced = (images != originals).flatten(1).any(1)
    assert 0 < replaced.sum() < 16
    if context == "fork":
        again = epoch()  # same loader seed: same augmentations
        assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again, strict=True))


# --- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "inpt,label,error,match",
    [
        (
            torch.rand(3, 32, 32),
            1,
            ValueError,
            r"FlowAugment expected an image of shape \[1, 8, 8\] \(the model's image_shape\), "
            r"got \[3, 32, 32\]; resize before FlowAugment or fit a model at this size\.",
        ),
        (
            PIL.Image.new("RGB", (8, 8)),
            1,
            ValueError,
            r"expected a PIL image of mode 'L' and size 8x8 .* got mode 'RGB'",
        ),
        (torch.zeros(1, 8, 8, dtype=torch.long), 1, TypeError, r"level codes 0\.\.16 with x"),
        (torch.zeros(1, 8, 8), 12, ValueError, r"label 12, but the model has 10 classes"),
        (torch.zeros(1, 8, 8), -1, ValueError, r"label -1, but the model has 10 classes"),
        (torch.full((1, 8, 8), 16.0), 1, ValueError, r"rescale them to \[0, 1\]"),
        # the second of two items is the label even when it is not a valid one: passing it over
        # would replace the image under the flow's class and keep the wrong label
        (torch.zeros(1, 8, 8), torch.tensor([1, 2]), ValueError, r"labels_getter=None"),
        (torch.zeros(1, 8, 8), torch.eye(10)[3], ValueError, r"before MixUp/CutMix"),
        (torch.zeros(1, 8, 8), 3.0, TypeError, r"float label 3\.0; pass class labels as ints"),
        (torch.zeros(1, 8, 8), 0.5, TypeError, r"labels_getter=None to ignore labels"),
        (torch.zeros(1, 1, 8, 8), 3, ValueError, r"integer labels of shape \[1\]"),
    ],
    ids=[
        "shape",
        "pil-mode",
        "dtype",
        "class",
        "negative",
        "range",
        "two-labels",
        "one-hot",
        "float-label",
        "fraction-label",
        "batch-int-label",
    ],  # fmt: skip
)
def test_errors_say_what_to_do(model, bank, inpt, label, error, match):
    aug = FlowAugment(model, p=1.0, bank=bank, seed=0)
    with pytest.raises(error, match=match):
        aug(inpt, label)


def test_batch_errors(model, bank):
    aug = FlowAugment(model, p=1.0, bank=bank, seed=0)
    with pytest.raises(ValueError, match="before MixUp/CutMix"):
        aug(torch.rand(4, 1, 8, 8), torch.eye(10)[:4])
    with pytest.raises(ValueError, match="got 3 labels for a batch of 4 images"):
        aug(torch.rand(4, 1, 8, 8), torch.arange(3))
    with pytest.raises(ValueError, match=r"got a batch of shape \[4, 3, 8, 8\]"):
        aug(torch.rand(4, 3, 8, 8), torch.arange(4))
    with pytest.raises(ValueError, match="label 10, but the model has 10 classes"):
        aug(torch.rand(2, 1, 8, 8), torch.tensor([0, 10]))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(p=1.5), r"p must be a probability in \[0, 1\]"),
        (dict(mode="mix"), "mode must be one of"),
        (dict(strength=2.0), r"strength must be in \[0, 1\]"),
        (dict(bank="yes"), "bank must be True, None or a flowaug.SyntheticBank"),
        (dict(mode="latent", bank="BANK"), "bank is used by mode='resample' only"),
        (dict(seed=1.5), "seed must be an int or None"),
        (dict(labels_getter=3), "labels_getter must be 'default', None or a callable"),
        (dict(coarse_scales=1), "coarse_scales is used by mode='latent' only"),
        (dict(mode="latent", coarse_scales=3), r"coarse_scales must be an int in \[1, 2\]"),
        (dict(mode="latent", coarse_scales=0), r"has 2 latent scales"),
        (dict(mode="latent", coarse_scales=1.0), "coarse_scales must be an int"),
        (dict(confidence=1.5), r"confidence must be a probability in \[0, 1\]"),
        (dict(confidence="high"), "confidence must be a number"),
    ],
)
def test_constructor_errors(model, bank, kwargs, match):
    if kwargs.get("bank") == "BANK":
        kwargs["bank"] = bank
    with pytest.raises((ValueError, TypeError), match=match):
        FlowAugment(model, **kwargs)


def test_bank_from_another_model_is_rejected(bank):
    other = Glow((1, 4, 4), 10, depth=1, hidden=8)
    with pytest.raises(ValueError, match="build the bank from the same model"):
        FlowAugment(other, bank=bank)


def test_labels_getter_none_ignores_labels(model, bank):
    aug = FlowAugment(model, p=1.0, bank=bank, seed=0, labels_getter=None)
    out, label = aug(grid_image(), 99)  # would be an unknown class if it were read
    assert label == 99 and out.shape == (1, 8, 8)
    target = torch.tensor([0.2, 0.7])  # e.g. a regression target: passed through untouched
    out, passed = aug(grid_image(), target)
    assert passed is target and out.shape == (1, 8, 8)


def test_docstring_examples_run():
    assert doctest.testmod(flowaug.integrations.augment.transform).failed == 0


# --- labels it cannot read, images without labels (issue 13) ---------------------------------
UNREADABLE = ["7", 7.5, 3.0, True, [7], torch.tensor([1, 2]), torch.eye(10)[3], np.array(["7"])]


@pytest.mark.parametrize("label", UNREADABLE, ids=lambda v: type(v).__name__ + repr(v)[:12])
@pytest.mark.parametrize(
    "form",
    [
        lambda aug, x, y: aug((x, y)),
        lambda aug, x, y: aug([x, y]),
        lambda aug, x, y: aug(x, y),
        lambda aug, x, y: aug((x, y, "meta")),
        lambda aug, x, y: aug({"image": x, "label": y}),
        lambda aug, x, y: aug((x, {"labels": y})),
    ],
    ids=["tuple", "list", "args", "triple", "dict", "target-dict"],
)
@pytest.mark.parametrize("kind", ["pil", "uint8", "float32", "tv_image_float"])
def test_a_label_it_cannot_read_is_an_error_in_every_form(model, bank, label, form, kind):
    # never the flow's own class next to the sample's label
    aug = FlowAugment(model, p=1.0, bank=bank, seed=0)
    with pytest.raises((ValueError, TypeError), match="FlowAugment"):
        form(aug, INPUTS[kind](), label)


@pytest.mark.parametrize("labels", ["7", ["a", "b", "c", "d"], 2.5, torch.rand(4)])
def test_unreadable_batch_labels_are_errors(model, bank, labels):
    aug = FlowAugment(model, p=1.0, bank=bank, seed=0)
    images = torch.stack([grid_image(i) for i in range(4)])
    with pytest.raises((ValueError, TypeError), match=r"labels .*shape \[4\]"):
        aug(images, labels)
    with pytest.raises((ValueError, TypeError), match=r"shape \[4\]"):
        aug([images, labels])


def flow_posterior(model, images01):
    return model.classify(image_to_model(images01, 17))


@pytest.mark.parametrize("mode", ["resample", "latent"])
def test_without_labels_only_confident_images_are_replaced(digits_glow, mode):
    model, x, _ = digits_glow
    images = x[:200].float() / 16
    confident = flow_posterior(model, images).amax(1) >= 0.99
    assert 0 < int(confident.sum()) < 200  # the trained flow is unsure of some digits
    aug = FlowAugment(model, p=1.0, mode=mode, bank_size=8, seed=0)
    assert aug.confidence == 0.99
    singles = list(images)
    kept = torch.tensor([aug(image) is image for image in singles])
    assert torch.equal(kept, ~confident)
    assert aug.stats == {
        "unlabelled_augmented": int(confident.sum()),
        "unlabelled_kept": int((~confident).sum()),
    }
    j = int((~confident).nonzero()[0])  # unchanged is the same object, for every image type
    pil = PIL.Image.fromarray((images[j, 0] * 255).round().byte().numpy(), mode="L")
    unsure = [pil, tv_tensors.Image(images[j]), images[j, 0]]
    assert all(aug(image) is image and aug((image, None))[0] is image for image in unsure)
    sample = {"image": unsure[1], "meta": "a"}
    assert aug(sample) is sample
    batch = FlowAugment(model, p=1.0, mode=mode, bank_size=8, seed=0)(images)
    changed = (batch != images).flatten(1).any(1)
    assert torch.equal(batch[~confident], images[~confident]) and changed[confident].all()
    everywhere = FlowAugment(model, p=1.0, mode=mode, bank_size=8, seed=0, confidence=0.0)
    assert (everywhere(images) != images).flatten(1).any(1).all()


def test_without_a_label_it_warns_once_and_points_to_the_joint_path(model, bank):
    import warnings

    aug = FlowAugment(model, p=1.0, bank=bank, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        aug(grid_image(1), 3)  # labelled: no warning
        assert not caught
        for i in range(3):
            aug(grid_image(i))
            aug({"image": grid_image(i)})
        FlowAugment(model, p=1.0, bank=bank, labels_getter=None)(grid_image())  # asked for
        aug(torch.stack([grid_image(i) for i in range(4)]))  # a batch is called as such
    assert len(caught) == 1 and caught[0].category is UserWarning
    assert "(image, label)" in str(caught[0].message) and "aug.stats" in str(caught[0].message)


@pytest.mark.parametrize("mode", ["resample", "latent"])
@pytest.mark.parametrize("p", [1.0, 0.0])
def test_value_range_is_checked_on_every_call(model, bank, mode, p):
    aug = FlowAugment(model, p=p, mode=mode, bank=bank if mode == "resample" else None, seed=0)
    for i in range(40):
        aug(grid_image(i), i % 10)
    normalized = grid_image(3) * 2 - 1  # v2.Normalize before FlowAugment
    with pytest.raises(ValueError, match=r"values in \[-1, 1\]; rescale them to \[0, 1\]"):
        aug(normalized, 3)
    with pytest.raises(ValueError, match=r"rescale them to \[0, 1\]"):
        aug(torch.stack([grid_image(0), normalized]), torch.tensor([1, 3]))


# --- ecosystem conventions (issue 13) ---------------------------------------------------------
@pytest.mark.parametrize("container", [dict, list, tuple])
@pytest.mark.parametrize("wrap", [tv_tensors.Image, lambda t: t])
def test_a_batched_image_next_to_other_images_in_one_sample(model, bank, container, wrap):
    # torchvision's _check_transform_sample_input_smoke: the input (here a batch) first, then a
    # tv_tensors.Image, a PIL image, boxes, masks and plain values
    aug = FlowAugment(model, p=1.0, bank=bank, seed=0)
    batch = wrap(torch.stack([grid_image(i) for i in range(4)]))
    sample = {"image_or_video": batch, "image_tv_tensor": tv_tensors.Image(grid_image(5))}
    sample["image_pil"] = INPUTS["pil"]()
    sample.update({k: v for k, v in mixed_sample(None).items() if k != "image"})
    sample = sample if container is dict else container(sample.values())
    flat_in, spec_in = tree_flatten(sample)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        out = aug(sample)
    flat_out, spec_out = tree_flatten(out)
    assert spec_out == spec_in
    for a, b, need in zip(flat_in, flat_out, aug._needs_transform_list(flat_in), strict=True):
        if need:
            assert_same_kind(b, a)
        else:
            assert b is a


def test_a_batch_in_a_sample_keeps_one_label_per_image(model, bank):
    import copy

    aug = FlowAugment(model, p=1.0, bank=bank, seed=0)
    alone = copy.deepcopy(aug)
    batch = tv_tensors.Image(torch.stack([grid_image(i) for i in range(4)]))
    labels = torch.tensor([3, 1, 2, 0])
    out = aug({"image": batch, "other": tv_tensors.Image(grid_image(5)), "labels": labels})
    assert out["labels"] is labels
    assert torch.equal(out["image"], alone(batch, labels)[0])
    for image, c in zip(out["image"], labels.tolist(), strict=True):
        assert image.numpy().tobytes() in {bank.get(c, i).numpy().tobytes() for i in range(16)}


@pytest.mark.parametrize("mode", ["resample", "latent"])
def test_deepcopy_continues_the_random_stream(model, bank, mode):
    import copy

    aug = FlowAugment(model, p=0.5, mode=mode, bank=bank if mode == "resample" else None, seed=3)
    run_sequence(aug, 5)
    twin = copy.deepcopy(aug)
    images = torch.stack([grid_image(i) for i in range(8)])
    for a, b in zip(run_sequence(aug), run_sequence(twin), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(aug(images, torch.arange(8))[0], twin(images, torch.arange(8))[0])
    fresh = FlowAugment(model, p=0.5, mode=mode, bank=bank if mode == "resample" else None, seed=3)
    assert not all(
        torch.equal(a, b) for a, b in zip(run_sequence(aug), run_sequence(fresh), strict=True)
    )


# --- an unconditional flow in latent mode (issue 12, item 4) ----------------------------------
@pytest.fixture(scope="module")
def unconditional():
    torch.manual_seed(0)
    m = perturb_zero_init(Glow((1, 8, 8), num_classes=None, depth=1, hidden=8, levels=17), 0.2)
    m.initialize(torch.rand(64, 1, 8, 8))
    return m.eval()


@pytest.mark.parametrize("kind", list(INPUTS))
def test_latent_mode_varies_images_of_an_unconditional_flow(unconditional, kind):
    import warnings

    aug = FlowAugment(unconditional, p=1.0, mode="latent", strength=0.8, seed=0)
    inpt = INPUTS[kind]()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no label is needed: no warning
        out = aug(inpt)
    assert_same_kind(out, inpt)
    as_array = np.asarray(out) if isinstance(out, PIL.Image.Image) else out.numpy()
    before = np.asarray(inpt) if isinstance(inpt, PIL.Image.Image) else inpt.numpy()
    assert not np.array_equal(as_array, before)
    for label in (4, "seven", torch.tensor([0.2, 0.7]), None):  # never read, passed through
        pair = aug((inpt, label))
        assert pair[1] is label
        assert_same_kind(pair[0], inpt)
    assert aug.stats == {"unlabelled_augmented": 0, "unlabelled_kept": 0}


def test_unconditional_latent_batches_and_strength_zero(unconditional):
    images = torch.stack([grid_image(i) for i in range(6)])
    aug = FlowAugment(unconditional, p=1.0, mode="latent", seed=0)
    for labels in (np.array(list("abcdef")), torch.rand(6, 3), torch.arange(6) + 100):
        out, passed = aug(images, labels)
        assert passed is labels and out.shape == images.shape and not torch.equal(out, images)
    same = FlowAugment(unconditional, p=1.0, mode="latent", strength=0.0, seed=0)
    assert torch.equal(same(images), images)
    x8 = (grid_image() * 255).round().to(torch.uint8)
    assert torch.equal(same(x8, 1)[0], x8)


def test_unconditional_flow_needs_latent_mode(unconditional):
    with pytest.raises(
        ValueError, match=r"mode='resample'\) needs a class-conditional .* use mode='latent'"
    ):
        FlowAugment(unconditional)
