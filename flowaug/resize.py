from flowaug.data.folders import check_image_size, resize_images  # noqa: F401  # shim: removed in the final sweep of issue 11
