"""How the optimised images are parametrised: pixels, or a scaled Fourier spectrum.

Both give images in ``[0, 1]`` (display space) from one leaf tensor ``param``
that Adam updates.

* :class:`PixelImage` -- ``x = param``, clamped to ``[0, 1]`` after every
  step (projected gradient ascent, as in Erhan et al. 2009 and Simonyan et al. 2014).
* :class:`FourierImage` -- the spatially decorrelated parametrisation of Olah
  et al. 2017 ("Feature Visualization", Distill): ``param`` holds the
  coefficients ``S`` of ``torch.fft.rfft2`` and::

      x = sigmoid( irfft2( S * scale ) ),   scale(f) = 1 / max(f, 1 / max(H, W))

  with ``f`` the coefficient's frequency in cycles per pixel. Dividing by the
  frequency equalises the energy of natural images' ``1/f`` spectrum, so a
  gradient step moves all frequencies alike instead of mostly the high ones
  (which is where the high-frequency noise of pixel-space ascent comes from).
  The sigmoid keeps pixels in ``(0, 1)``. Colours are not decorrelated.
"""

from __future__ import annotations

import torch

from attribkit.features.transforms import frequencies, gaussian_blur, gaussian_transfer

PIXEL_NOISE = 0.1     # std of the random start around mid-grey, pixel parametrisation
SPECTRUM_NOISE = 0.01  # std of the random start of the spectrum, Fourier parametrisation


class PixelImage:
    """Pixels in ``[0, 1]``, optimised directly."""

    def __init__(self, x: torch.Tensor) -> None:
        self.param = x.detach().clone().clamp_(0.0, 1.0).requires_grad_(True)

    @classmethod
    def random(cls, generators: list[torch.Generator], shape: tuple[int, int, int],
               device: torch.device) -> "PixelImage":
        noise = torch.stack([torch.randn(shape, generator=g) for g in generators])
        return cls((0.5 + PIXEL_NOISE * noise).to(device))

    @classmethod
    def from_image(cls, x: torch.Tensor) -> "PixelImage":
        return cls(x)

    def image(self) -> torch.Tensor:
        return self.param

    @torch.no_grad()
    def project(self) -> None:
        self.param.clamp_(0.0, 1.0)

    @torch.no_grad()
    def blur(self, sigma: float) -> None:
        self.param.copy_(gaussian_blur(self.param, sigma))


class FourierImage:
    """``x = sigmoid(irfft2(S * scale))`` with ``S`` optimised (Olah et al. 2017)."""

    def __init__(self, spectrum: torch.Tensor, size: tuple[int, int]) -> None:
        self.size = size
        f = frequencies(*size).to(spectrum.device)
        self.scale = 1.0 / torch.clamp(f, min=1.0 / max(size))
        self.param = torch.view_as_real(spectrum.detach()).clone().requires_grad_(True)

    @classmethod
    def random(cls, generators: list[torch.Generator], shape: tuple[int, int, int],
               device: torch.device) -> "FourierImage":
        c, h, w = shape
        noise = torch.stack([torch.randn((c, h, w // 2 + 1, 2), generator=g) for g in generators])
        return cls(torch.view_as_complex(SPECTRUM_NOISE * noise).to(device), (h, w))

    @classmethod
    def from_image(cls, x: torch.Tensor) -> "FourierImage":
        """The spectrum whose image is ``x`` (clamped to ``[1e-3, 1 - 1e-3]`` for the logit)."""
        size = tuple(x.shape[-2:])
        raw = torch.logit(x.detach().clamp(1e-3, 1 - 1e-3))
        scale = 1.0 / torch.clamp(frequencies(*size).to(x.device), min=1.0 / max(size))
        return cls(torch.fft.rfft2(raw, norm="ortho") / scale, size)

    def image(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.param) * self.scale
        return torch.sigmoid(torch.fft.irfft2(spectrum, s=self.size, norm="ortho"))

    def project(self) -> None:
        """Nothing to do: the sigmoid keeps the image in ``(0, 1)``."""

    @torch.no_grad()
    def blur(self, sigma: float) -> None:
        """Blur the image before the sigmoid, exactly, in the Fourier domain."""
        self.param.mul_(gaussian_transfer(*self.size, sigma).to(self.param)[..., None])


PARAMETRIZATIONS = {"pixel": PixelImage, "fft": FourierImage}
