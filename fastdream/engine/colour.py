"""The colour statistics of photos, shared by the dream step's colour preconditioner
(:func:`fastdream.engine.dream.colour_preconditioner`) and feature visualization's decorrelated
parameterization (:mod:`fastdream.featvis.param`)."""
import torch

# Square root of the RGB covariance of photos, U * sqrt(S) from the SVD C = U S U^T, columns ordered by
# decreasing variance (luminance first, then blue-orange and green-magenta opponents). Computed once by
# ``color_sqrt_from_images`` on the project's example photos (scikit-image data photos: astronaut.png,
# chelsea.png, hubble_deep_field.jpg, motorcycle_right.png from scikit-image's data folder; every photo
# weighted equally, pixels in [0, 1]) and each column's sign fixed so its first (red) entry is positive. It is close to
# the ImageNet matrix published with Lucid ([[.26, .09, .02], [.27, 0, -.05], [.27, -.09, .03]]).
COLOR_SQRT = torch.tensor([
    [0.1991, 0.0889, 0.0063],
    [0.2035, -0.0247, -0.0256],
    [0.2047, -0.0619, 0.0193],
])
# Lucid normalizes by the largest column norm, so the luminance coordinate has unit scale.
COLOR_MATRIX = COLOR_SQRT / COLOR_SQRT.norm(dim=0).max()
