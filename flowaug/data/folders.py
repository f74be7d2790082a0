"""Image folders (``root/<class>/<image>``, or unlabelled images in ``root``) and resizing them:
Glow halves height and width at each scale, so odd or mixed sizes are resized to ``N x N``."""

import os
from dataclasses import replace
from pathlib import Path

import torch

from flowaug.data.flowdata import FlowData
from flowaug.data.tensors import from_tensors, stack_images

__all__ = ["IMAGE_EXTENSIONS", "check_image_size", "load_image_folder", "resize_images"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _image_files(folder: Path, recursive: bool) -> list[Path]:
    found = sorted(folder.rglob("*") if recursive else folder.iterdir())
    return [f for f in found if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file()]


def load_image_folder(
    root: str | os.PathLike, levels: int | None = None, size: int | None = None
) -> FlowData:
    """Images in ``root/<class name>/<file>`` (torchvision ``ImageFolder`` layout), read locally.

    Classes are the sub-folder names in sorted order; a folder whose images sit directly in
    ``root`` (no class sub-folders) is unlabelled (``y=None``), e.g. for
    ``fit(unlabelled=...)``. Grayscale folders give 1 channel, anything
    else 3 (RGB); all images must have one size, unless ``size`` is given: then every image is
    resized to ``size x size`` (bilinear) as it is read.
    """
    from PIL import Image

    root = Path(root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    per_class = [_image_files(root / cls, recursive=True) for cls in classes]
    files = [f for found in per_class for f in found]
    labels = [label for label, found in enumerate(per_class) for _ in found]
    if not files:  # images directly in root: an unlabelled folder
        files, classes, labels = _image_files(root, recursive=False), [], None
    if not files:
        raise ValueError(
            f"{root} holds no images in class sub-folders (root/<class>/<image>, extensions "
            f"{IMAGE_EXTENSIONS}) nor directly in it (unlabelled images)."
        )
    opened = []
    for f in files:
        try:
            with Image.open(f) as img:
                img.load()
        except OSError as err:  # PIL.UnidentifiedImageError, truncated files
            raise ValueError(f"{f} is not a readable image ({err}); remove or replace it.") from err
        if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            raise ValueError(
                f"{f} is a {img.mode!r} (16-bit or float) image; flowaug reads 8-bit images "
                "(L, RGB): convert the folder to 8-bit first."
            )
        opened.append(img)
    mode = "L" if all(img.mode in ("L", "1") for img in opened) else "RGB"
    converted = [img.convert(mode) for img in opened]
    if size is not None:
        converted = [img.resize((size, size), Image.Resampling.BILINEAR) for img in converted]
    x = stack_images(converted, str(root), [str(f) for f in files])
    return from_tensors(x, labels, levels, classes or None, str(root))


def check_image_size(size: int, option: str = "--image-size") -> int:
    """``size`` when it is an even int >= 4 (Glow halves it at least once), else ValueError."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 4 or size % 2:
        raise ValueError(
            f"{option} must be an even number of pixels >= 4 (Glow halves the size at each "
            f"scale; a multiple of 8 allows 3 scales), got {size!r}."
        )
    return size


def resize_images(data: FlowData, size: int) -> FlowData:
    """``data`` with its images resized to ``size x size`` (bilinear, antialiased); integer
    images stay integers on the same levels. Data already at that size is returned as is."""
    check_image_size(size)
    if not data.is_image:
        raise ValueError(
            f"--image-size applies to images, but the data holds feature vectors of shape "
            f"{list(data.event_shape)}; drop --image-size."
        )
    if tuple(data.event_shape[1:]) == (size, size):
        return data
    out = torch.nn.functional.interpolate(
        data.x.double(), size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )
    if data.is_discrete:
        out = out.round().clamp(0, data.levels - 1)
    else:
        out = out.clamp(0, 1)
    return replace(data, x=out.to(data.x.dtype))
